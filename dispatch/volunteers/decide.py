"""The alerting rule, pure: given an incident, a snapshot of volunteers and the alerts
so far, and the time, who is alerted, whose alert lapses and who is stood down.

No I/O and no clock: ``dispatch.volunteers.alerter`` reads the snapshot in a
transaction and applies the answer with conditional writes, so a decision taken on a
snapshot that moved meanwhile changes nothing it should not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from dispatch.errors import InvalidTransition, NotFound
from dispatch.volunteers.policy import AlertPolicy
from geo.distance import distance_m
from geo.points import GeoPoint

ACTIVE = frozenset({"alerted", "accepted"})
ENDED_INCIDENT = frozenset({"closed", "merged"})


@dataclass(frozen=True, slots=True)
class VolunteerSnap:
    """A volunteer as the rule sees it."""

    id: str
    point: GeoPoint | None
    position_at: datetime | None
    available: bool
    verified: bool
    opted_out: bool
    busy: bool  # alerted to, or helping at, some incident now


@dataclass(frozen=True, slots=True)
class IncidentSnap:
    """An incident as the rule sees it; ``consent`` is the caller's (None: not asked)."""

    id: int
    type: str
    status: str
    point: GeoPoint | None
    created_at: datetime
    consent: str | None = None


@dataclass(frozen=True, slots=True)
class AlertSnap:
    """One alert to one volunteer (``volunteer_id`` None once their data was deleted)."""

    id: int
    incident_id: int
    volunteer_id: str | None
    state: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Pick:
    """A volunteer to alert, and how far they are from the incident."""

    volunteer_id: str
    distance_m: float


def why_not_alerting(incident: IncidentSnap, policy: AlertPolicy, now: datetime) -> str | None:
    """Why this incident alerts no (more) volunteers, or None when it may."""
    if incident.type not in policy.incident_types:
        return f"incident type {incident.type} is not one volunteers are alerted to"
    if incident.status in ENDED_INCIDENT:
        return f"the incident is {incident.status}"
    if incident.consent == "refused":
        return "the caller refused volunteers"
    if incident.point is None:
        return "the incident has no location yet"
    if now - incident.created_at > timedelta(seconds=policy.max_incident_age_s):
        return "the incident is older than max_incident_age_s"
    return None


def eligible(volunteer: VolunteerSnap, policy: AlertPolicy, now: datetime) -> bool:
    """Whether a volunteer may be alerted at all now (wherever the incident is)."""
    if not (volunteer.available and volunteer.verified) or volunteer.opted_out:
        return False
    if volunteer.busy or volunteer.point is None or volunteer.position_at is None:
        return False
    stale = policy.position_stale_s
    return stale is None or now - volunteer.position_at <= timedelta(seconds=stale)


def room_left(alerts: Iterable[AlertSnap], policy: AlertPolicy) -> int:
    """How many more volunteers the incident with these alerts may have at once."""
    return policy.max_per_incident - sum(1 for a in alerts if a.state in ACTIVE)


def choose(
    incident: IncidentSnap,
    volunteers: Iterable[VolunteerSnap],
    alerts: Iterable[AlertSnap],
    policy: AlertPolicy,
    now: datetime,
) -> list[Pick]:
    """The volunteers to alert to ``incident`` now, nearest first.

    ``alerts`` are the incident's alerts so far (every state): those active count
    against ``max_per_incident``, and nobody is alerted twice to one incident.
    """
    if why_not_alerting(incident, policy, now) is not None or incident.point is None:
        return []
    alerts = list(alerts)
    room = room_left(alerts, policy)
    if room <= 0:
        return []
    asked = {a.volunteer_id for a in alerts}
    picks: list[Pick] = []
    for volunteer in volunteers:
        if volunteer.id in asked or volunteer.point is None or not eligible(volunteer, policy, now):
            continue
        metres = distance_m(incident.point, volunteer.point)
        if metres <= policy.radius_m:
            picks.append(Pick(volunteer.id, metres))
    picks.sort(key=lambda p: (p.distance_m, p.volunteer_id))
    return picks[:room]


def expired(alerts: Iterable[AlertSnap], now: datetime) -> list[int]:
    """The alerts that waited too long for an answer (accepted ones never lapse)."""
    return [a.id for a in alerts if a.state == "alerted" and a.expires_at <= now]


def stand_down_reason(incident: IncidentSnap) -> str | None:
    """Why everyone alerted to this incident is stood down now, or None."""
    if incident.status == "closed":
        return "incident_closed"
    if incident.status == "merged":
        return "incident_merged"
    if incident.consent == "refused":
        return "consent_refused"
    return None


def answer(
    alert: AlertSnap | None,
    alert_id: int,
    volunteer_id: str,
    *,
    wanted: str,
    incident_status: str,
    now: datetime,
) -> str:
    """The state a volunteer's answer (accepted, declined or done) moves an alert to.

    NotFound for an alert that is not theirs (the same words as one that does not
    exist: a volunteer learns nothing of other alerts); InvalidTransition when its state
    does not allow the answer.
    """
    if alert is None or alert.volunteer_id != volunteer_id:
        raise NotFound("alert", alert_id)
    state = alert.state
    if state == "alerted" and alert.expires_at <= now:
        state = "expired"  # the expiry loop has not got to it yet
    if incident_status in ENDED_INCIDENT and state in ACTIVE:
        raise InvalidTransition("alert", alert_id, f"for a {incident_status} incident", wanted)
    allowed = {"accepted": {"alerted"}, "declined": {"alerted"}, "done": {"accepted"}}
    if state not in allowed[wanted]:
        raise InvalidTransition("alert", alert_id, state, wanted)
    return wanted

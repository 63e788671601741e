"""An offer's rows: claiming a free unit (a conditional UPDATE, so two transactions
never take one unit) and, in the same statement, the assignment and the incident's plan
and escalation; then the events."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from dispatch.core.facts import IncidentFacts
from dispatch.core.rank import Candidate
from dispatch.events import EventType, NewEvent, append_event, append_events
from dispatch.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Offer:
    """An offer made to a unit."""

    assignment_id: int
    unit_id: str
    expires_at: datetime
    travel_time_s: float


async def claim_and_offer(
    conn: asyncpg.Connection,
    schema: str,
    incident: IncidentFacts,
    candidate: Candidate,
    agency: str,
    *,
    actor: str,
    timeout_s: float,
    metrics: Metrics | None,
    reason: str | None = None,
) -> Offer | None:
    """Claim the candidate and offer it the incident's slot of ``agency``; None if the
    unit is no longer available (another transaction claimed it first).

    One statement claims (a conditional UPDATE: when two transactions race for a unit,
    the second waits for the row lock, re-checks and finds it taken), inserts the
    assignment and updates the incident's plan and escalation; a second appends the
    events."""
    # Units on their way for every slot of the plan answer whatever the incident was
    # escalated for (no location, no unit in reach, offers refused): the flag goes, in
    # the same statement. One slot still empty keeps it. The statement sees the rows as
    # they were before it: ``earlier`` counts the incident's offers before this one.
    written = await conn.fetchrow(
        "WITH claimed AS (UPDATE units SET status = 'offered', updated_at = now()"
        " WHERE id = $2 AND status = 'available' RETURNING id),"
        " offer AS (INSERT INTO assignments"
        " (incident_id, unit_id, agency, status, expires_at, travel_time_s)"
        " SELECT $1, id, $3, 'offered', now() + make_interval(secs => $4), $5 FROM claimed"
        " RETURNING id, expires_at),"
        " before AS (SELECT escalated, escalation_reason FROM incidents WHERE id = $1),"
        " updated AS (UPDATE incidents i SET unfilled = array_remove(i.unfilled, $3),"
        " updated_at = now(),"
        " status = CASE WHEN i.status IN ('new', 'queued') THEN 'offered' ELSE i.status END,"
        " escalated = i.escalated AND cardinality(array_remove(i.unfilled, $3)) > 0,"
        " escalation_reason = CASE WHEN cardinality(array_remove(i.unfilled, $3)) > 0"
        " THEN i.escalation_reason END,"
        " waiting_reason = CASE WHEN cardinality(array_remove(i.unfilled, $3)) > 0"
        " THEN i.waiting_reason END"
        " FROM before WHERE i.id = $1 AND EXISTS (SELECT 1 FROM offer)"
        " RETURNING i.status, extract(epoch FROM now() - i.created_at) AS age,"
        " before.escalated AND NOT i.escalated AS cleared, before.escalation_reason AS was)"
        " SELECT offer.id, offer.expires_at, updated.*,"
        " (SELECT count(*) FROM assignments WHERE incident_id = $1) AS earlier"
        " FROM offer, updated",
        incident.id,
        candidate.unit_id,
        agency,
        timeout_s,
        candidate.travel_time_s,
    )
    if written is None:
        return None
    offer = Offer(written["id"], candidate.unit_id, written["expires_at"], candidate.travel_time_s)
    updated = written
    incident_status = updated["status"]
    if metrics is not None and updated["earlier"] == 0:
        metrics.time_to_dispatch.observe(float(updated["age"]))
    data: dict[str, Any] = {
        "assignment_id": offer.assignment_id,
        "expires_at": offer.expires_at.isoformat(),
        "travel_time_s": round(offer.travel_time_s, 1),
        "distance_m": round(candidate.distance_m, 1),
        "tier": candidate.tier.name.lower() if candidate.tier is not None else "manual",
        "agency": agency,
        "incident_status": incident_status,
        "incident": {
            "type": incident.type.name,
            "priority": incident.type.priority,
            "location": {"lat": incident.point.lat, "lon": incident.point.lon},
            "zone_id": incident.zone_id,
        },
    }
    if reason is not None:
        data["reason"] = reason
    log.info(
        "unit offered",
        extra={
            "incident_id": incident.id,
            "unit_id": offer.unit_id,
            "assignment_id": offer.assignment_id,
            "agency": agency,
            "tier": data["tier"],
        },
    )
    # The unit's status change and the offer, in one statement (the intake's hot path).
    await append_events(
        conn,
        schema,
        [
            # The incident it is offered, as every later status change of the job
            # carries; so, like them, it reaches the incident's desks (a desk of the
            # unit's zone must not learn another zone's incident id from it).
            NewEvent(
                EventType.UNIT_STATUS_CHANGED,
                actor,
                incident_id=incident.id,
                unit_id=offer.unit_id,
                data={
                    "from": "available",
                    "to": "offered",
                    "assignment_id": offer.assignment_id,
                },
            ),
            NewEvent(
                EventType.ASSIGNMENT_OFFERED,
                actor,
                incident_id=incident.id,
                unit_id=offer.unit_id,
                data=data,
            ),
        ],
    )
    if updated["cleared"]:
        await append_event(
            conn,
            schema,
            EventType.INCIDENT_DEESCALATED,
            actor=actor,
            incident_id=incident.id,
            data={
                "reason": f"every agency of the plan has a unit ({agency}: {offer.unit_id})",
                "was": updated["was"],
            },
        )
    return offer

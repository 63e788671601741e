"""SHOUT volunteers in the offline simulator: who gets to a woman or child in distress
first, a volunteer or the police, over a simulated day.

An overlay on an ``OfflineSimulator`` run: the police response is the run's; the
volunteers are alerted by the live rule itself (``dispatch.volunteers.decide.choose``,
with the live policy), when the incident reaches dispatch. Each volunteer, placed at a
seeded point of the city, is available at a given moment with probability
``available_share`` (drawn per incident); an alerted one answers after an exponential
delay (mean ``answer_s``) and accepts with probability ``accept_share``; an answer
later than the alert's lifetime is an expiry. A decline or an expiry frees the slot for
the next nearest, as live. One who accepts travels the straight line times the road
factor at ``speed_kmh`` (on foot or a two-wheeler), and stays busy until the police are
on scene plus ``stay_s``. Volunteers do not change the police's run (they are extra
help, not a replacement), so "without volunteers" is the police alone.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dispatch.simulation.offline import SimResult
from dispatch.simulation.scenario import Arrival, City, SimConfig
from dispatch.volunteers.decide import IncidentSnap, VolunteerSnap, choose
from dispatch.volunteers.policy import AlertPolicy
from geo.points import GeoPoint

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class VolunteerModel:
    """How simulated volunteers behave (see the module's docstring)."""

    per_zone: int = 6
    available_share: float = 0.3
    accept_share: float = 0.6
    answer_s: float = 60.0
    speed_kmh: float = 15.0
    road_factor: float = 1.4
    stay_s: float = 600.0


@dataclass(frozen=True, slots=True)
class FirstHelp:
    """One alertable emergency: report to police on scene, and to the first volunteer
    on scene (None: none came before the police, or none was alerted)."""

    incident_id: int
    type: str
    police_s: float | None
    volunteer_s: float | None
    alerted: int

    @property
    def first_s(self) -> float | None:
        """Report to the first help on scene, whoever it was."""
        times = [t for t in (self.police_s, self.volunteer_s) if t is not None]
        return min(times) if times else None


def place_volunteers(city: City, per_zone: int, *, seed: int = 0) -> dict[str, GeoPoint]:
    """``per_zone`` volunteers at seeded points of each zone's incident points' area."""
    placed: dict[str, GeoPoint] = {}
    for zone_id in city.zone_ids:
        rng = random.Random(f"erss-sim-volunteers:{seed}:{zone_id}")  # noqa: S311
        pool = city.points[zone_id]
        for n in range(per_zone):
            base = pool[rng.randrange(len(pool))]
            # Not on the incident points themselves: up to ~700 m away from one.
            placed[f"{zone_id}-v{n}"] = GeoPoint(
                lat=base.lat + rng.uniform(-0.006, 0.006),
                lon=base.lon + rng.uniform(-0.006, 0.006),
            )
    return placed


def _police_on_scene(result: SimResult) -> dict[int, float]:
    first: dict[int, float] = {}
    for r in result.responses:
        if r.agency == "police" and r.on_scene_s is not None:
            first[r.incident_id] = min(first.get(r.incident_id, math.inf), r.on_scene_s)
    return first


def overlay(
    arrivals: Sequence[Arrival],
    result: SimResult,
    config: SimConfig,
    volunteers: dict[str, GeoPoint],
    policy: AlertPolicy,
    model: VolunteerModel,
    *,
    seed: int = 0,
) -> list[FirstHelp]:
    """First help for every emergency of the policy's types, with these volunteers."""
    police = _police_on_scene(result)
    busy_until: dict[str, float] = {}
    out: list[FirstHelp] = []
    everyone = AlertPolicy(
        policy.incident_types,
        radius_m=policy.radius_m,
        max_per_incident=len(volunteers) or 1,
        position_stale_s=None,
        max_incident_age_s=86_400.0,  # created when alerted: never too old
    )
    speed_ms = model.speed_kmh / 3.6
    for arrival in arrivals:
        if arrival.type not in policy.incident_types:
            continue
        police_at = police.get(arrival.id)
        police_s = None if police_at is None else police_at - arrival.t_s
        t_alert = arrival.t_s + config.dispatch_delay_s[arrival.channel]
        rng = random.Random(f"erss-sim-volunteer-draws:{seed}:{arrival.id}")  # noqa: S311
        now = _EPOCH + timedelta(seconds=t_alert)
        snaps = [
            VolunteerSnap(
                vid,
                where,
                now,
                available=rng.random() < model.available_share,
                verified=True,
                opted_out=False,
                busy=busy_until.get(vid, -math.inf) > t_alert,
            )
            for vid, where in sorted(volunteers.items())
        ]
        incident = IncidentSnap(arrival.id, arrival.type, "new", arrival.point, now)
        # The live rule, asked once for everyone in reach, nearest first; slots then
        # pass down the list as alerts are declined or lapse.
        queue = choose(incident, snaps, [], everyone, now)
        slots = [(t_alert, i) for i in range(min(policy.max_per_incident, len(queue)))]
        heapq.heapify(slots)
        next_pick, best, alerted = 0, math.inf, 0
        while slots and next_pick < len(queue):
            alerted_at, _ = heapq.heappop(slots)
            if police_at is not None and alerted_at >= police_at:
                break  # the police are there: nobody new would arrive first
            pick = queue[next_pick]
            next_pick += 1
            alerted += 1
            delay = rng.expovariate(1.0 / model.answer_s)
            accepts = rng.random() < model.accept_share and delay <= policy.alert_ttl_s
            answered_at = alerted_at + min(delay, policy.alert_ttl_s)
            if not accepts:
                busy_until[pick.volunteer_id] = answered_at
                heapq.heappush(slots, (answered_at, next_pick))
                continue
            there = answered_at + pick.distance_m * model.road_factor / speed_ms
            best = min(best, there)
            end = max(there, police_at if police_at is not None else there) + model.stay_s
            busy_until[pick.volunteer_id] = end
        volunteer_s = best - arrival.t_s if best < math.inf else None
        if volunteer_s is not None and police_s is not None and volunteer_s >= police_s:
            volunteer_s = None
        out.append(FirstHelp(arrival.id, arrival.type, police_s, volunteer_s, alerted))
    return out


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise_help(helps: Sequence[FirstHelp]) -> dict[str, float]:
    """Median and 90th percentile of first help, in minutes, with and without
    volunteers; the share a volunteer reached first. Emergencies the police never
    reached in the run are left out of both."""
    both = [h for h in helps if h.police_s is not None]
    police = [h.police_s for h in both if h.police_s is not None]
    first = [h.first_s for h in both if h.first_s is not None]
    return {
        "incidents": float(len(both)),
        "police_median_min": _quantile(police, 0.5) / 60.0,
        "police_p90_min": _quantile(police, 0.9) / 60.0,
        "with_volunteers_median_min": _quantile(first, 0.5) / 60.0,
        "with_volunteers_p90_min": _quantile(first, 0.9) / 60.0,
        "volunteer_first_share": (
            sum(1 for h in both if h.volunteer_s is not None) / len(both) if both else math.nan
        ),
    }

"""Choosing a unit: who may serve a need, and in which order. Pure, no I/O.

Units of the incident's own zone come first, then those of neighbouring zones, then any
other unit within the maximum radius; within each tier, by estimated travel time. The
shell then tries to claim them in this order; the first conditional UPDATE that wins
gets the offer. Which units may be ranked at all (free, of the agency, not refused, with
a position recent enough) is decided here too, from the snapshot's ``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import IntEnum

from dispatch.core.facts import IncidentFacts, LiveFix, Need, Rules, TravelModel, UnitSnapshot
from geo.distance import distance_m, travel_time_s
from geo.points import GeoPoint


class Tier(IntEnum):
    """How close to the incident's jurisdiction a candidate is."""

    OWN_ZONE = 0
    NEIGHBOUR_ZONE = 1
    WITHIN_RADIUS = 2


@dataclass(frozen=True, slots=True)
class Candidate:
    """A unit that could serve the incident, with the reason for its rank."""

    unit_id: str
    tier: Tier | None  # None: chosen by an operator, not ranked
    distance_m: float
    travel_time_s: float


Policy = Callable[[Need, Iterable[UnitSnapshot], TravelModel], list[Candidate]]


@dataclass(frozen=True, slots=True)
class Choice:
    """The ranking of one need: candidates in the order to claim them, and whether the
    policy holds the need back while some unit could go (a low-priority hold)."""

    ranked: tuple[Candidate, ...]
    held: bool


def with_live_fix(
    unit: UnitSnapshot, fix: LiveFix | None, zone_of: Callable[[GeoPoint], str | None]
) -> UnitSnapshot:
    """The unit where its newest fix puts it: the live fix when it is newer than the
    stored position (PostgreSQL's copy lags by up to a flush), the stored one otherwise."""
    if fix is None or (unit.position_at is not None and fix.at <= unit.position_at):
        return unit
    return replace(unit, position=fix.point, position_at=fix.at, zone_id=zone_of(fix.point))


def is_fresh(position_at: float | None, now: float, stale_s: float | None) -> bool:
    """Whether a position taken at ``position_at`` is recent enough to dispatch by (a unit
    silent for ``stale_s`` may be anywhere); None: every position is trusted."""
    return stale_s is None or (position_at is not None and position_at > now - stale_s)


def need_of(
    incident: IncidentFacts, agency: str, neighbour_zone_ids: frozenset[str], rules: Rules
) -> Need:
    """What a unit of ``agency`` must offer to serve this incident."""
    return Need(
        point=incident.point,
        zone_id=incident.zone_id,
        neighbour_zone_ids=neighbour_zone_ids,
        agency=agency,
        capabilities=incident.type.needs_of(agency),
        priority=incident.type.priority,
        waited_s=incident.waited_s,
        budget_s=rules.target_s(incident.zone_id) - incident.waited_s - rules.accept_allowance_s,
    )


def eligible(
    need: Need,
    units: Iterable[UnitSnapshot],
    refused: frozenset[str],
    *,
    now: float,
    stale_s: float | None,
) -> list[UnitSnapshot]:
    """Units that may be ranked for ``need``: free, of its agency, not refused, with a
    recent position. Capabilities and reach are the policy's to judge."""
    return [
        u
        for u in units
        if u.status == "available"
        and u.agency == need.agency
        and u.id not in refused
        and is_fresh(u.position_at, now, stale_s)
    ]


def holds(policy: Policy, need: Need) -> bool:
    """Whether the policy would rather this need waited for a unit that can arrive in
    time than take one that cannot (a low-priority hold)."""
    rule = getattr(policy, "holds", None)
    return bool(rule(need)) if rule is not None else False


def choose(need: Need, units: list[UnitSnapshot], policy: Policy, travel: TravelModel) -> Choice:
    """Rank eligible ``units`` for ``need`` by the policy; held when the policy ranks
    none only because of its hold (closest-idle would send one)."""
    ranked = tuple(policy(need, units, travel))
    held = not ranked and holds(policy, need) and bool(closest_idle(need, units, travel))
    return Choice(ranked, held)


def closest_idle(need: Need, units: Iterable[UnitSnapshot], model: TravelModel) -> list[Candidate]:
    """Rank suitable units by estimated travel time, the incident's own zone first.

    A unit of the incident's zone goes before a unit of a neighbouring zone unless the
    neighbour is faster by more than ``zone_slack_s``; units from farther away (within
    ``max_radius_m``) carry twice that handicap.
    """
    speed = model.speed_for(need.zone_id)
    ranked: list[tuple[float, Candidate]] = []
    for unit in units:
        if unit.agency != need.agency or not need.capabilities <= unit.capabilities:
            continue
        metres = distance_m(need.point, unit.position)
        if need.zone_id is not None and unit.zone_id == need.zone_id:
            tier = Tier.OWN_ZONE
        elif unit.zone_id is not None and unit.zone_id in need.neighbour_zone_ids:
            tier = Tier.NEIGHBOUR_ZONE
        elif metres <= model.max_radius_m:
            tier = Tier.WITHIN_RADIUS
        else:
            continue
        seconds = travel_time_s(
            need.point, unit.position, road_factor=model.road_factor, speed_kmh=speed
        )
        ranked.append(
            (seconds + tier * model.zone_slack_s, Candidate(unit.id, tier, metres, seconds))
        )
    # unit_id breaks ties so every instance ranks the same state the same way.
    ranked.sort(key=lambda item: (item[0], item[1].unit_id))
    return [candidate for _, candidate in ranked]


def manual(
    incident: IncidentFacts, unit_id: str, position: GeoPoint | None, travel: TravelModel
) -> Candidate:
    """An operator's chosen unit as a candidate: its distance and driving time (zero
    when its position is unknown), no tier."""
    if position is None:
        return Candidate(unit_id, None, 0.0, 0.0)
    seconds = travel_time_s(
        incident.point, position, road_factor=travel.road_factor, speed_kmh=travel.speed_kmh
    )
    return Candidate(unit_id, None, distance_m(incident.point, position), seconds)

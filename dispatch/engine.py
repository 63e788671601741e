"""Choosing a unit: pure ranking of candidates for an incident, no I/O.

Units of the incident's own zone come first, then those of neighbouring zones, then any
other unit within the maximum radius; within each tier, by estimated travel time. The
store then tries to claim them in this order; the first conditional UPDATE that wins
gets the offer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum

from geo.distance import distance_m, travel_time_s
from geo.points import GeoPoint


class Tier(IntEnum):
    """How close to the incident's jurisdiction a candidate is."""

    OWN_ZONE = 0
    NEIGHBOUR_ZONE = 1
    WITHIN_RADIUS = 2


@dataclass(frozen=True, slots=True)
class UnitSnapshot:
    """What the engine needs to know about an available unit."""

    id: str
    agency: str
    zone_id: str | None
    position: GeoPoint
    capabilities: frozenset[str] = frozenset()
    position_at: float | None = None  # when the position was taken (Unix seconds)


@dataclass(frozen=True, slots=True)
class LiveFix:
    """A unit's newest reported position and when it was taken (Unix seconds)."""

    point: GeoPoint
    at: float


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


@dataclass(frozen=True, slots=True)
class Candidate:
    """A unit that could serve the incident, with the reason for its rank."""

    unit_id: str
    tier: Tier | None  # None: chosen by an operator, not ranked
    distance_m: float
    travel_time_s: float


@dataclass(frozen=True, slots=True)
class Need:
    """What an incident asks of a unit."""

    point: GeoPoint
    zone_id: str | None
    neighbour_zone_ids: frozenset[str]
    agency: str
    capabilities: frozenset[str] = frozenset()
    priority: int = 1  # of the incident: 1 (life at risk) to 4
    waited_s: float = 0.0  # since the report: how long the incident has waited already
    # Seconds left for a unit to get there within the response target (None: unknown).
    budget_s: float | None = None


@dataclass(frozen=True, slots=True)
class TravelModel:
    """Converts straight-line distance into an estimated driving time, and says how much
    faster an outside unit must be to go before the jurisdiction's own."""

    road_factor: float = 1.4
    speed_kmh: float = 30.0
    max_radius_m: float = 15_000.0
    # Seconds by which a unit of the incident's own zone may be slower than a
    # neighbour's and still go first (it knows the area and the station answers for
    # it); twice that over units from farther away.
    zone_slack_s: float = 120.0
    zone_speeds_kmh: Mapping[str, float] = field(default_factory=dict)

    def seconds_per_m(self, zone_id: str | None = None) -> float:
        """Driving seconds per metre of straight line (road factor over the zone's speed)."""
        return self.road_factor / (self.speed_for(zone_id) / 3.6)

    def speed_for(self, zone_id: str | None) -> float:
        """Average speed in the incident's zone (dense old town slower than highways)."""
        if zone_id is None:
            return self.speed_kmh
        return self.zone_speeds_kmh.get(zone_id, self.speed_kmh)


Policy = Callable[[Need, Iterable[UnitSnapshot], TravelModel], list[Candidate]]


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

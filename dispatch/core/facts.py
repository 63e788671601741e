"""The snapshot types decisions are made from: plain values, read by the shell.

An incident's facts, the units with where their newest fix puts them, what it asks of a
unit (a need), how distances become driving times, and the settings of the dispatch
rules. Time is a value here (``now``, Unix seconds), never read from a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dispatch.incident_types import IncidentType
from geo.points import GeoPoint


@dataclass(frozen=True, slots=True)
class UnitSnapshot:
    """What the core needs to know about a unit."""

    id: str
    agency: str
    zone_id: str | None
    position: GeoPoint
    capabilities: frozenset[str] = frozenset()
    position_at: float | None = None  # when the position was taken (Unix seconds)
    status: str = "available"


@dataclass(frozen=True, slots=True)
class LiveFix:
    """A unit's newest reported position and when it was taken (Unix seconds)."""

    point: GeoPoint
    at: float


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What the dispatcher needs to know about an incident to find it a unit."""

    id: int
    type: IncidentType
    point: GeoPoint
    zone_id: str | None
    waited_s: float = 0.0  # since it was reported


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


@dataclass(frozen=True, slots=True)
class Rules:
    """The deployment's dispatch settings that decisions depend on."""

    max_offers: int = 3  # refused offers after which operators decide
    preempt_priority: int | None = None  # jobs this urgent or less may lose their unit
    position_stale_s: float | None = None  # a position older than this is not trusted
    response_target_s: float = 600.0
    zone_targets_s: Mapping[str, float] = field(default_factory=dict)
    # What a crew usually takes to accept an offer, kept out of the time left to get there.
    accept_allowance_s: float = 20.0

    def target_s(self, zone_id: str | None) -> float:
        """The response target of a zone (the deployment's, unless the zone has its own)."""
        return self.zone_targets_s.get(zone_id or "", self.response_target_s)


@dataclass(frozen=True, slots=True)
class PlanSnapshot:
    """Everything needed to decide how to fill an incident's plan, as read at ``now``.

    ``unfilled``: agencies of the plan with no unit offered or on its way. ``units``: the
    units that may be candidates (the shell may pass only the nearest). ``refused``: units
    that declined, let an offer expire or were taken off it, never offered it again.
    """

    incident: IncidentFacts
    unfilled: tuple[str, ...]
    units: tuple[UnitSnapshot, ...]
    refused: frozenset[str]
    neighbour_zone_ids: frozenset[str]
    now: float

"""What a need asks of a unit, and the edges of ranking: pure, no I/O.

A need carries the incident's priority, how long it has waited, and the time left to
reach it within its zone's response target less what a crew takes to accept
(dispatch/core/facts.py); a live fix moves a unit into the zone it now is in; units
within the maximum radius (inclusive) are ranked whatever their order in the list; a
policy that ranks nobody holds a need only if it says so.
"""

from __future__ import annotations

from collections.abc import Iterable

from dispatch.core.facts import IncidentFacts, LiveFix, Need, Rules, TravelModel, UnitSnapshot
from dispatch.core.rank import (
    Candidate,
    Tier,
    choose,
    closest_idle,
    need_of,
    with_live_fix,
)
from dispatch.incident_types import load_incident_types
from geo.distance import distance_m
from geo.points import GeoPoint

TYPES = load_incident_types()
HERE = GeoPoint(lat=20.2961, lon=85.8245)


def _north(metres: float) -> GeoPoint:
    return GeoPoint(lat=HERE.lat + metres / 111_195.0, lon=HERE.lon)


def test_a_need_carries_priority_wait_and_the_time_left() -> None:
    # Priority 2: a need's default priority is 1, so the type's must be carried over.
    kind = TYPES["crime_in_progress"]
    incident = IncidentFacts(7, kind, HERE, "old-town", waited_s=100.0)
    rules = Rules(
        response_target_s=600.0, zone_targets_s={"old-town": 900.0}, accept_allowance_s=20.0
    )
    need = need_of(incident, "police", frozenset({"cantonment"}), rules)
    assert need == Need(
        point=HERE,
        zone_id="old-town",
        neighbour_zone_ids=frozenset({"cantonment"}),
        agency="police",
        capabilities=kind.needs_of("police"),
        priority=2,
        waited_s=100.0,
        # The zone's own 900 s target, less 100 s waited and 20 s to accept.
        budget_s=780.0,
    )


def test_a_live_fix_puts_the_unit_in_the_zone_it_is_now_in() -> None:
    unit = UnitSnapshot("p-1", "police", "old-town", _north(0), position_at=10.0)
    moved = with_live_fix(unit, LiveFix(_north(5_000), 20.0), _zone_by_latitude)
    assert (moved.position, moved.position_at, moved.zone_id) == (_north(5_000), 20.0, "north")


def _zone_by_latitude(point: GeoPoint) -> str | None:
    return "north" if point.lat > HERE.lat + 0.01 else "old-town"


def test_a_unit_at_exactly_the_maximum_radius_is_in_reach() -> None:
    unit = UnitSnapshot("edge", "police", None, _north(2_000))
    model = TravelModel(max_radius_m=distance_m(HERE, unit.position))
    need = Need(HERE, "home", frozenset(), "police")
    assert [c.unit_id for c in closest_idle(need, [unit], model)] == ["edge"]


def test_a_unit_beyond_reach_does_not_hide_the_ones_after_it() -> None:
    need = Need(HERE, "home", frozenset(), "police")
    far = UnitSnapshot("far", "police", None, _north(20_000))
    near = UnitSnapshot("near", "police", None, _north(1_000))
    ranked = closest_idle(need, [far, near], TravelModel(max_radius_m=15_000.0))
    assert [(c.unit_id, c.tier) for c in ranked] == [("near", Tier.WITHIN_RADIUS)]


class _Nobody:
    """A policy that ranks nobody and has no hold (e.g. one that only sends units with
    a capability the fleet lacks)."""

    def __call__(
        self, need: Need, units: Iterable[UnitSnapshot], model: TravelModel
    ) -> list[Candidate]:
        return []


class _HoldsLowPriority(_Nobody):
    """Holds priority 3 and 4 needs (as the coverage policy does), not urgent ones."""

    def holds(self, need: Need) -> bool:
        return need.priority >= 3


def test_a_policy_without_a_hold_never_holds() -> None:
    unit = UnitSnapshot("near", "police", "home", _north(100))
    need = Need(HERE, "home", frozenset(), "police", priority=3)
    assert choose(need, [unit], _Nobody(), TravelModel()).held is False


def test_a_policy_holds_the_needs_it_says_it_holds() -> None:
    unit = UnitSnapshot("near", "police", "home", _north(100))
    low = Need(HERE, "home", frozenset(), "police", priority=3)
    urgent = Need(HERE, "home", frozenset(), "police", priority=1)
    assert choose(low, [unit], _HoldsLowPriority(), TravelModel()).held is True
    assert choose(urgent, [unit], _HoldsLowPriority(), TravelModel()).held is False


def test_a_need_carries_what_the_type_asks_of_the_agency() -> None:
    """A woman in distress needs a woman officer among the police sent."""
    incident = IncidentFacts(8, TYPES["women_in_distress"], HERE, "old-town")
    need = need_of(incident, "police", frozenset(), Rules())
    assert need.capabilities == frozenset({"woman_officer"})
    assert need_of(incident, "ambulance", frozenset(), Rules()).capabilities == frozenset()

"""Response plans, holds, pre-emption and an operator's choice: pure, no I/O.

The rules as docs/api.md ("Dispatch behaviour operators should know") and
docs/protocol.md (incident.queued, incident.escalated) state them: each agency of the
plan is a slot; an agency with no unit waits and is escalated, one only held by the
coverage policy waits quietly; after ERSS_MAX_OFFERS refusals operators decide;
pre-emption only for priority 1, and only where the deployment allows it.
"""

from __future__ import annotations

from collections.abc import Iterable

from dispatch.core.decide import decide_fill
from dispatch.core.facts import (
    IncidentFacts,
    Need,
    PlanSnapshot,
    Rules,
    TravelModel,
    UnitSnapshot,
)
from dispatch.core.plans import (
    Verdict,
    after_fill,
    after_refusals,
    may_preempt,
    no_unit_reason,
    preempt_order,
    slots_in_order,
)
from dispatch.core.rank import Candidate, Tier, choose, closest_idle, manual
from dispatch.incident_types import load_incident_types
from geo.distance import distance_m
from geo.points import GeoPoint

TYPES = load_incident_types()
HERE = GeoPoint(lat=20.2961, lon=85.8245)
TRAVEL = TravelModel()


def _unit(ident: str, metres_north: float, agency: str = "police") -> UnitSnapshot:
    point = GeoPoint(lat=HERE.lat + metres_north / 111_195.0, lon=HERE.lon)
    return UnitSnapshot(ident, agency, "home", point)


def _need(agency: str = "police", priority: int = 3) -> Need:
    return Need(
        point=HERE,
        zone_id="home",
        neighbour_zone_ids=frozenset(),
        agency=agency,
        priority=priority,
    )


def test_slots_follow_the_plan_then_what_a_reclassified_incident_was_promised() -> None:
    assert slots_in_order(["fire", "police"], ["police", "fire"]) == ["fire", "police"]
    assert slots_in_order(["fire", "police"], ["ambulance", "police"]) == ["police", "ambulance"]
    assert slots_in_order(["fire"], []) == []


def test_only_priority_1_pre_empts_and_only_where_allowed() -> None:
    assert may_preempt(1, 4) is True
    assert may_preempt(2, 4) is False
    assert may_preempt(1, None) is False


def test_pre_emption_never_takes_a_unit_that_refused() -> None:
    busy = [_unit("near", 100), _unit("refused", 50), _unit("far", 900)]
    order = preempt_order(_need(), busy, frozenset({"refused"}), closest_idle, TRAVEL)
    assert [c.unit_id for c in order] == ["near", "far"]


def test_an_agency_with_no_unit_is_escalated_and_one_only_held_waits_quietly() -> None:
    escalated = after_fill(["fire", "police"], [], {"fire": "none free"})
    reason = "no available unit in reach (fire: none free; police)"
    assert escalated == Verdict(reason, reason)
    assert after_fill([], ["police"]) == Verdict(
        "held for a unit that can arrive in time (police)", None
    )
    # Missing beats held: operators must hear of the agency with nobody.
    assert after_fill(["fire"], ["police"]) == Verdict(
        "no available unit in reach (fire)", "no available unit in reach (fire)"
    )
    assert after_fill([], []) == Verdict(None, None)
    assert no_unit_reason([]) == "no available unit in reach"


def test_after_max_offers_refusals_operators_decide() -> None:
    assert after_refusals(2, 3) is None
    assert after_refusals(3, 3) == Verdict("no unit accepted in time", "3 offers were not accepted")
    assert after_refusals(4, 3) == Verdict("no unit accepted in time", "4 offers were not accepted")


class _Holding:
    """A policy that holds every need (as the coverage policy holds a low-priority call
    no free unit can reach in time) and so ranks nobody."""

    def __call__(
        self, need: Need, units: Iterable[UnitSnapshot], model: TravelModel
    ) -> list[Candidate]:
        return []

    def holds(self, need: Need) -> bool:
        return True


def test_a_need_is_held_only_when_closest_idle_would_have_sent_a_unit() -> None:
    units = [_unit("near", 100)]
    assert choose(_need(), units, _Holding(), TRAVEL).held is True
    # Nobody of the agency: nothing was held back, the slot simply has nobody.
    assert choose(_need("fire"), units, _Holding(), TRAVEL).held is False
    # A policy without a hold ranks nobody only when nobody suits.
    assert choose(_need("fire"), units, closest_idle, TRAVEL).held is False
    assert choose(_need(), units, closest_idle, TRAVEL).ranked[0].unit_id == "near"


def test_a_held_incident_waits_without_escalation() -> None:
    incident = IncidentFacts(1, TYPES["other"], HERE, "home")
    snapshot = PlanSnapshot(
        incident,
        ("police",),
        (_unit("near", 100),),
        frozenset(),
        frozenset(),
        1_000.0,
    )
    decision = decide_fill(snapshot, _Holding(), TRAVEL, Rules())
    assert decision.offers == {}
    assert decision.verdict == Verdict("held for a unit that can arrive in time (police)", None)
    assert decision.slots[0].why is None


def test_an_operators_unit_is_timed_like_any_other_and_has_no_tier() -> None:
    incident = IncidentFacts(1, TYPES["other"], HERE, "home")
    there = GeoPoint(lat=HERE.lat + 0.01, lon=HERE.lon)
    metres = distance_m(HERE, there)
    chosen = manual(incident, "p-7", there, TravelModel(road_factor=1.5, speed_kmh=36.0))
    # 36 km/h is 10 m/s; 1.5 m of road per metre of straight line.
    assert chosen == Candidate("p-7", None, metres, metres * 1.5 / 10.0)
    assert manual(incident, "p-8", None, TRAVEL) == Candidate("p-8", None, 0.0, 0.0)


def test_travel_speed_and_response_target_by_zone() -> None:
    model = TravelModel(speed_kmh=30.0, zone_speeds_kmh={"old-town": 15.0})
    assert (model.speed_for(None), model.speed_for("old-town"), model.speed_for("x")) == (
        30.0,
        15.0,
        30.0,
    )
    assert model.seconds_per_m("old-town") == 1.4 / (15.0 / 3.6)
    rules = Rules(response_target_s=600.0, zone_targets_s={"rural": 1200.0})
    assert (rules.target_s("rural"), rules.target_s(None), rules.target_s("x")) == (
        1200.0,
        600.0,
        600.0,
    )


def test_own_zone_goes_first_unless_a_neighbour_is_much_faster() -> None:
    """The own zone's unit goes first unless the neighbour's is faster by more than the
    zone slack (120 s). At 30 km/h and a road factor of 1.4 a straight-line metre is
    0.168 s: 556 m is 93 s, 1000 m 168 s, 111 m 19 s."""
    need = Need(HERE, "home", frozenset({"next"}), "police")

    def order(own_m: float, neighbour_m: float) -> list[str]:
        own = UnitSnapshot("own", "police", "home", _unit("", own_m).position)
        neighbour = UnitSnapshot("nb", "police", "next", _unit("", neighbour_m).position)
        ranked = closest_idle(need, [neighbour, own], TRAVEL)
        assert {c.unit_id: c.tier for c in ranked} == {
            "own": Tier.OWN_ZONE,
            "nb": Tier.NEIGHBOUR_ZONE,
        }
        return [c.unit_id for c in ranked]

    assert order(556, 111) == ["own", "nb"]  # 93 s against 19 + 120 s
    assert order(1000, 111) == ["nb", "own"]  # 168 s against 19 + 120 s

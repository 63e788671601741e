"""The decision for one slot and why it got nobody, as operators read it: pure, no I/O.

docs/api.md ("Why no unit"): an escalation names, per agency, why its free units were
passed over: none free, N units sent no position for over S s, N units refused it,
N units without <capability>, N units beyond <max radius> km. Each unit is counted once,
under the first reason an operator can act on; units of other agencies or not free are
not counted. A slot records its need, whether it may pre-empt, and the reason only
when nobody was ranked and nothing was held.
"""

from __future__ import annotations

from dispatch.core.decide import decide_fill
from dispatch.core.explain import why_none
from dispatch.core.facts import (
    IncidentFacts,
    Need,
    PlanSnapshot,
    Rules,
    TravelModel,
    UnitSnapshot,
)
from dispatch.core.plans import held_reason
from dispatch.core.rank import closest_idle
from dispatch.incident_types import load_incident_types
from geo.distance import distance_m
from geo.points import GeoPoint

TYPES = load_incident_types()
HERE = GeoPoint(lat=20.2961, lon=85.8245)
NOW = 1_000_000.0


def _unit(
    ident: str,
    metres: float = 500.0,
    *,
    agency: str = "ambulance",
    caps: frozenset[str] = frozenset({"als", "oxygen"}),
    at: float = NOW - 10,
    status: str = "available",
) -> UnitSnapshot:
    point = GeoPoint(lat=HERE.lat + metres / 111_195.0, lon=HERE.lon)
    return UnitSnapshot(ident, agency, "home", point, caps, at, status)


NEED = Need(HERE, "home", frozenset(), "ambulance", frozenset({"als", "oxygen"}))


def test_every_unit_is_counted_under_its_reason() -> None:
    units = [
        _unit("police-first", agency="police"),  # another agency: not counted, not the end
        _unit("busy", status="dispatched"),
        _unit("refused-1"),
        _unit("refused-2"),
        _unit("basic-1", caps=frozenset({"oxygen"})),
        _unit("basic-2", caps=frozenset()),
        _unit("far-1", 7_000),
        _unit("far-2", 9_000),
        _unit("near-1", 100),
        _unit("near-2", 200),
    ]
    travel = TravelModel(max_radius_m=5_500.0)
    why = why_none(
        NEED, units, frozenset({"refused-1", "refused-2"}), now=NOW, stale_s=300.0, travel=travel
    )
    # 5.5 km is shown rounded to the kilometre: 6 km.
    assert why == (
        "2 units refused it, 2 units without als, oxygen, 2 units beyond 6 km,"
        " 2 units not chosen by the dispatch policy"
    )


def test_a_unit_at_exactly_the_maximum_radius_is_not_beyond_it() -> None:
    unit = _unit("edge", 3_000)
    travel = TravelModel(max_radius_m=distance_m(HERE, unit.position))
    why = why_none(NEED, [unit], frozenset(), now=NOW, stale_s=None, travel=travel)
    assert why == "1 unit not chosen by the dispatch policy"


def test_two_held_agencies_are_both_named() -> None:
    assert held_reason(["police", "fire"]) == (
        "held for a unit that can arrive in time (police, fire)"
    )


def _snapshot(kind: str, units: tuple[UnitSnapshot, ...], agency: str) -> PlanSnapshot:
    incident = IncidentFacts(1, TYPES[kind], HERE, "home")
    return PlanSnapshot(incident, (agency,), units, frozenset(), frozenset(), NOW)


def test_a_slot_with_only_a_silent_unit_says_why_and_offers_nobody() -> None:
    silent = _unit("silent", agency="police", caps=frozenset(), at=NOW - 3_600)
    rules = Rules(position_stale_s=300.0)
    decision = decide_fill(
        _snapshot("other", (silent,), "police"), closest_idle, TravelModel(), rules
    )
    slot = decision.slots[0]
    assert decision.offers == {}
    assert slot.why == "1 unit sent no position for over 300 s"
    assert slot.need.agency == "police"
    assert slot.need.point == HERE


def test_a_slot_that_has_a_unit_has_no_reason() -> None:
    unit = _unit("p-1", agency="police", caps=frozenset())
    decision = decide_fill(
        _snapshot("other", (unit,), "police"), closest_idle, TravelModel(), Rules()
    )
    assert decision.offers == {"police": "p-1"}
    assert decision.slots[0].why is None


def test_only_a_priority_1_slot_may_pre_empt_where_the_deployment_allows() -> None:
    unit = _unit("p-1", agency="police", caps=frozenset())
    allowed = Rules(preempt_priority=4)
    urgent = next(k for k, t in TYPES.items() if t.priority == 1 and "police" in t.plan)
    lesser = next(k for k, t in TYPES.items() if t.priority > 1 and "police" in t.plan)

    def preempt(kind: str, rules: Rules) -> bool:
        snapshot = _snapshot(kind, (unit,), "police")
        return decide_fill(snapshot, closest_idle, TravelModel(), rules).slots[0].preempt

    assert preempt(urgent, allowed) is True
    assert preempt(lesser, allowed) is False
    assert preempt(urgent, Rules()) is False

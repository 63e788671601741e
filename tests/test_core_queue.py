"""The queue's choices, without PostgreSQL: random waiting incidents and free units fed
to dispatch.core.queue.sweep. Safety: a unit is proposed first to at most one incident,
never to one that refused it, never one of another agency. Liveness and order: served by
priority then age; an incident worth serving gets a unit while an eligible one is left."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dispatch.core.facts import IncidentFacts, Rules, TravelModel, UnitSnapshot
from dispatch.core.queue import Waiting, serve_order, sweep, worth_serving
from dispatch.core.rank import closest_idle
from dispatch.incident_types import load_incident_types
from geo.points import GeoPoint

TYPES = load_incident_types()
NOW = 1_000_000.0
CENTRE = GeoPoint(lat=20.30, lon=85.82)
RULES = Rules(max_offers=3, position_stale_s=600.0)
TRAVEL = TravelModel()
PLAIN = ("panic", "other", "nuisance", "accident", "medical")  # no capability needs

units_st = st.lists(
    st.builds(
        lambda n, agency, dlat: UnitSnapshot(
            f"u{n}",
            agency,
            "z",
            GeoPoint(lat=CENTRE.lat + dlat, lon=CENTRE.lon),
            position_at=NOW - 5,
        ),
        st.integers(0, 30),
        st.sampled_from(("police", "ambulance")),
        st.floats(-0.05, 0.05),
    ),
    max_size=8,
    unique_by=lambda u: u.id,
)


@st.composite
def waiting_st(draw: st.DrawFn) -> list[Waiting]:
    items = []
    for n in range(draw(st.integers(0, 6))):
        kind = TYPES[draw(st.sampled_from(PLAIN))]
        facts = IncidentFacts(n, kind, CENTRE, "z", draw(st.floats(0, 3600)))
        refused = draw(st.frozensets(st.sampled_from([f"u{i}" for i in range(31)]), max_size=3))
        items.append(
            Waiting(facts, tuple(kind.plan), refused, frozenset(), draw(st.integers(0, 4)))
        )
    return items


@given(waiting_st(), units_st)
def test_the_queue_never_proposes_a_unit_twice_or_to_one_that_refused(
    waiting: list[Waiting], units: list[UnitSnapshot]
) -> None:
    plans = sweep(waiting, units, closest_idle, TRAVEL, RULES, now=NOW)
    agency_of = {u.id: u.agency for u in units}
    firsts = []
    for snapshot, decision in plans:
        for slot in decision.slots:
            for candidate in slot.ranked:
                assert candidate.unit_id not in snapshot.refused
                assert agency_of[candidate.unit_id] == slot.agency
            if slot.first is not None:
                firsts.append(slot.first.unit_id)
    assert len(firsts) == len(set(firsts))


@given(waiting_st(), units_st)
def test_the_queue_serves_by_priority_then_age_and_leaves_no_eligible_unit_idle(
    waiting: list[Waiting], units: list[UnitSnapshot]
) -> None:
    plans = sweep(waiting, units, closest_idle, TRAVEL, RULES, now=NOW)
    served = [snapshot.incident.id for snapshot, _ in plans]
    order = [w.facts.id for w in serve_order(waiting)]
    assert served == [i for i in order if i in served]
    keys = [(s.incident.type.priority, -s.incident.waited_s) for s, _ in plans]
    assert keys == sorted(keys)
    proposed = {s.first.unit_id for _, d in plans for s in d.slots if s.first is not None}
    decisions = {snapshot.incident.id: decision for snapshot, decision in plans}
    agencies = frozenset(u.agency for u in units)
    for item in waiting:
        if not worth_serving(item, agencies, RULES.max_offers):
            assert item.facts.id not in served
            continue
        # Liveness: a unit of an open slot's agency that did not refuse the incident and
        # was left unproposed means the incident got a unit for that slot.
        for agency in item.unfilled:
            idle = [
                u
                for u in units
                if u.agency == agency and u.id not in item.refused and u.id not in proposed
            ]
            if idle:
                slot = next(s for s in decisions[item.facts.id].slots if s.agency == agency)
                assert slot.first is not None, (item, agency, idle)


def test_an_incident_refused_too_often_is_left_to_operators() -> None:
    kind = TYPES["panic"]
    tired = Waiting(
        IncidentFacts(1, kind, CENTRE, "z", 60), ("police",), frozenset(), frozenset(), 3
    )
    fresh = Waiting(
        IncidentFacts(2, kind, CENTRE, "z", 30), ("police",), frozenset(), frozenset(), 2
    )
    unit = UnitSnapshot("u1", "police", "z", CENTRE, position_at=NOW)
    plans = sweep([tired, fresh], [unit], closest_idle, TRAVEL, RULES, now=NOW)
    assert [s.incident.id for s, _ in plans] == [2]

"""dispatch.core.rank without I/O: the newest fix wins, staleness is judged at the
snapshot's ``now``, and the unit that pinged next to the incident a moment ago is the
one offered."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dispatch.core.decide import decide_fill
from dispatch.core.facts import (
    IncidentFacts,
    LiveFix,
    PlanSnapshot,
    Rules,
    TravelModel,
    UnitSnapshot,
)
from dispatch.core.rank import closest_idle, eligible, is_fresh, need_of, with_live_fix
from dispatch.incident_types import load_incident_types
from geo.points import GeoPoint

PANIC = load_incident_types()["panic"]
HERE = GeoPoint(lat=20.2961, lon=85.8245)
_M_PER_DEG = 111_195.0
NOW = 1_000_000.0


def north(metres: float) -> GeoPoint:
    return GeoPoint(lat=HERE.lat + metres / _M_PER_DEG, lon=HERE.lon)


def zone_of(point: GeoPoint) -> str | None:
    return "home"


def test_the_unit_that_pinged_next_to_the_panic_a_moment_ago_wins() -> None:
    """Stored (flushed) positions say A is 20 m away and B 1 km; their MDTs said, since
    the flush, that A is 1 km away and B 15 m. B is offered."""
    a = UnitSnapshot("a", "police", "home", north(20), position_at=NOW - 4.0)
    b = UnitSnapshot("b", "police", "home", north(-1_000), position_at=NOW - 4.0)
    fixes = {"a": LiveFix(north(1_000), NOW - 1.0), "b": LiveFix(north(15), NOW - 0.3)}
    placed = tuple(with_live_fix(u, fixes.get(u.id), zone_of) for u in (a, b))
    snapshot = PlanSnapshot(
        IncidentFacts(1, PANIC, HERE, "home"), ("police",), placed, frozenset(), frozenset(), NOW
    )
    assert decide_fill(snapshot, closest_idle, TravelModel(), Rules()).offers == {"police": "b"}
    # Without the fixes, the flushed positions would have sent A: the test can fail.
    stale_view = PlanSnapshot(
        IncidentFacts(1, PANIC, HERE, "home"), ("police",), (a, b), frozenset(), frozenset(), NOW
    )
    assert decide_fill(stale_view, closest_idle, TravelModel(), Rules()).offers == {"police": "a"}


@given(
    stored_at=st.none() | st.floats(0, 2_000),
    fix_at=st.none() | st.floats(0, 2_000),
)
def test_the_newest_of_the_stored_position_and_the_live_fix_is_used(
    stored_at: float | None, fix_at: float | None
) -> None:
    unit = UnitSnapshot("u", "police", "old", north(500), position_at=stored_at)
    fix = LiveFix(north(5), fix_at) if fix_at is not None else None
    placed = with_live_fix(unit, fix, zone_of)
    if fix is not None and (stored_at is None or fix.at > stored_at):
        assert (placed.position, placed.position_at, placed.zone_id) == (fix.point, fix.at, "home")
    else:
        assert placed == unit


@given(age=st.floats(0, 1_200), stale_s=st.none() | st.floats(1, 900))
def test_staleness_is_judged_at_the_snapshots_now(age: float, stale_s: float | None) -> None:
    unit = UnitSnapshot("u", "police", "home", HERE, position_at=NOW - age)
    need = need_of(IncidentFacts(1, PANIC, HERE, "home"), "police", frozenset(), Rules())
    fresh = stale_s is None or age < stale_s
    assert is_fresh(unit.position_at, NOW, stale_s) == fresh
    assert (eligible(need, [unit], frozenset(), now=NOW, stale_s=stale_s) == [unit]) == fresh
    # A unit that never reported a time is trusted only when staleness is off.
    timeless = UnitSnapshot("t", "police", "home", HERE)
    assert is_fresh(timeless.position_at, NOW, stale_s) == (stale_s is None)

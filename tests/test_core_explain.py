"""Why a slot got no unit, and an incident's best fix without one report: pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dispatch.core.correlate import best_fix
from dispatch.core.explain import why_none
from dispatch.core.facts import Need, TravelModel, UnitSnapshot
from dispatch.core.plans import after_fill
from geo.location import Location
from geo.points import GeoPoint

HERE = GeoPoint(lat=20.30, lon=85.82)
NOW = 1_000_000.0
TRAVEL = TravelModel(max_radius_m=15_000.0)


def _unit(
    ident: str,
    *,
    lat: float = 20.301,
    at: float = NOW - 10,
    agency: str = "police",
    status: str = "available",
) -> UnitSnapshot:
    return UnitSnapshot(
        id=ident,
        agency=agency,
        zone_id="z",
        position=GeoPoint(lat=lat, lon=85.82),
        position_at=at,
        status=status,
    )


def _why(
    units: list[UnitSnapshot],
    refused: frozenset[str] = frozenset(),
    caps: tuple[str, ...] = (),
) -> str:
    wanted = Need(
        point=HERE,
        zone_id="z",
        neighbour_zone_ids=frozenset(),
        agency="police",
        capabilities=frozenset(caps),
    )
    return why_none(wanted, units, refused, now=NOW, stale_s=300.0, travel=TRAVEL)


def test_each_reason_is_counted_once_per_unit() -> None:
    units = [
        _unit("stale-1", at=NOW - 301),
        _unit("stale-2", at=NOW - 3600),
        _unit("refused", at=NOW - 3600),  # refused first: the reason an operator can act on
        _unit("far", lat=20.50),
        _unit("busy", status="dispatched"),
        _unit("ambulance", agency="ambulance"),
    ]
    assert _why(units, frozenset({"refused"})) == (
        "2 units sent no position for over 300 s, 1 unit refused it, 1 unit beyond 15 km"
    )


def test_missing_capability_is_named() -> None:
    assert _why([_unit("a")], caps=("woman_officer",)) == "1 unit without woman_officer"


def test_no_free_unit_of_the_agency_is_none_free() -> None:
    assert _why([_unit("busy", status="on_scene"), _unit("amb", agency="ambulance")]) == (
        "none free"
    )


def test_a_unit_the_policy_passed_over_is_not_called_none_free() -> None:
    assert _why([_unit("ok")]) == "1 unit not chosen by the dispatch policy"


def test_the_escalation_names_each_agency_with_its_reason() -> None:
    verdict = after_fill(["fire", "police"], [], {"fire": "none free"})
    assert verdict.escalate_reason == "no available unit in reach (fire: none free; police)"
    assert verdict.wait_reason == verdict.escalate_reason


def _fix(lat: float, radius: float) -> Location:
    return Location(point=GeoPoint(lat=lat, lon=85.82), radius_m=radius, method="gps")


def test_best_fix_follows_the_rule_between_reports_in_arrival_order() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    wide, sharp, newer = _fix(20.30, 100.0), _fix(20.31, 10.0), _fix(20.32, 20.0)
    assert best_fix([]) is None
    assert best_fix([(wide, t0), (sharp, t0 + timedelta(seconds=5))]) == sharp
    # Newer and at most twice as uncertain wins; three times as uncertain does not.
    assert best_fix([(sharp, t0), (newer, t0 + timedelta(seconds=5))]) == newer
    assert best_fix([(sharp, t0), (_fix(20.33, 30.0), t0 + timedelta(seconds=5))]) == sharp

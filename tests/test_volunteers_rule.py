"""The volunteer alerting rule, pure: who is alerted, what lapses, who stands down,
which answers are allowed, how a location is rounded and how the policy is read."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from dispatch.errors import ConfigurationError, InvalidTransition, NotFound
from dispatch.incident_types import load_incident_types
from dispatch.volunteers.approx import approximate
from dispatch.volunteers.decide import (
    AlertSnap,
    IncidentSnap,
    VolunteerSnap,
    answer,
    choose,
    expired,
    stand_down_reason,
)
from dispatch.volunteers.policy import AlertPolicy, load_policy, policy_from_dict
from geo.distance import distance_m
from geo.points import GeoPoint

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HERE = GeoPoint(lat=20.2961, lon=85.8245)
POLICY = AlertPolicy(frozenset({"panic", "women_in_distress"}), radius_m=2000, max_per_incident=2)


def north(metres: float) -> GeoPoint:
    return GeoPoint(lat=HERE.lat + metres / 111_320.0, lon=HERE.lon)


def volunteer(vid: str, metres: float, **changes: object) -> VolunteerSnap:
    fields: dict[str, object] = {
        "id": vid,
        "point": north(metres),
        "position_at": NOW - timedelta(seconds=30),
        "available": True,
        "verified": True,
        "opted_out": False,
        "busy": False,
    }
    fields.update(changes)
    return VolunteerSnap(**fields)  # type: ignore[arg-type]


def incident(**changes: object) -> IncidentSnap:
    fields: dict[str, object] = {
        "id": 1,
        "type": "women_in_distress",
        "status": "new",
        "point": HERE,
        "created_at": NOW - timedelta(minutes=1),
    }
    fields.update(changes)
    return IncidentSnap(**fields)  # type: ignore[arg-type]


def alert(vid: str | None, state: str, *, expires_in: float = 60) -> AlertSnap:
    return AlertSnap(1, 1, vid, state, NOW + timedelta(seconds=expires_in))


def picked(*args: object, **kwargs: object) -> list[str]:
    return [p.volunteer_id for p in choose(*args, **kwargs)]  # type: ignore[arg-type]


def test_the_nearest_inside_the_radius_at_most_n() -> None:
    pool = [volunteer("far", 2100), volunteer("c", 1500), volunteer("a", 100), volunteer("b", 900)]
    assert picked(incident(), pool, [], POLICY, NOW) == ["a", "b"]
    one = AlertPolicy(POLICY.incident_types, radius_m=2000, max_per_incident=5)
    assert picked(incident(), pool, [], one, NOW) == ["a", "b", "c"], "2100 m is outside"


def test_who_is_never_alerted() -> None:
    pool = [
        volunteer("busy", 100, busy=True),
        volunteer("away", 100, available=False),
        volunteer("unverified", 100, verified=False),
        volunteer("out", 100, opted_out=True),
        volunteer("stale", 100, position_at=NOW - timedelta(hours=1)),
        volunteer("nowhere", 100, point=None, position_at=None),
        volunteer("ok", 1000),
    ]
    assert picked(incident(), pool, [], POLICY, NOW) == ["ok"]


def test_active_alerts_take_room_and_nobody_is_asked_twice() -> None:
    pool = [volunteer("a", 100), volunteer("b", 200), volunteer("c", 300)]
    assert picked(incident(), pool, [alert("x", "accepted")], POLICY, NOW) == ["a"]
    assert picked(incident(), pool, [alert("a", "declined")], POLICY, NOW) == ["b", "c"]
    assert (
        picked(incident(), pool, [alert("x", "alerted"), alert("y", "accepted")], POLICY, NOW) == []
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "fire"},
        {"status": "closed"},
        {"status": "merged"},
        {"consent": "refused"},
        {"point": None},
        {"created_at": NOW - timedelta(hours=2)},
    ],
)
def test_incidents_that_alert_nobody(changes: dict[str, object]) -> None:
    assert picked(incident(**changes), [volunteer("a", 100)], [], POLICY, NOW) == []


def test_expiry_and_stand_down() -> None:
    alerts = [
        alert("a", "alerted", expires_in=-1),
        alert("b", "alerted", expires_in=0),
        alert("c", "alerted", expires_in=5),
        alert("d", "accepted", expires_in=-100),
    ]
    alerts = [AlertSnap(i, 1, a.volunteer_id, a.state, a.expires_at) for i, a in enumerate(alerts)]
    assert expired(alerts, NOW) == [0, 1], "accepted alerts never lapse"
    assert stand_down_reason(incident(status="closed")) == "incident_closed"
    assert stand_down_reason(incident(status="merged")) == "incident_merged"
    assert stand_down_reason(incident(consent="refused")) == "consent_refused"
    assert stand_down_reason(incident(consent="given")) is None


def test_answers() -> None:
    pending = alert("a", "alerted")
    assert answer(pending, 1, "a", wanted="accepted", incident_status="new", now=NOW) == "accepted"
    with pytest.raises(NotFound) as other:
        answer(pending, 1, "b", wanted="accepted", incident_status="new", now=NOW)
    with pytest.raises(NotFound) as missing:
        answer(None, 1, "b", wanted="accepted", incident_status="new", now=NOW)
    assert str(other.value) == str(missing.value)
    with pytest.raises(InvalidTransition):
        answer(
            alert("a", "alerted", expires_in=-1),
            1,
            "a",
            wanted="accepted",
            incident_status="new",
            now=NOW,
        )
    with pytest.raises(InvalidTransition):
        answer(pending, 1, "a", wanted="accepted", incident_status="closed", now=NOW)
    with pytest.raises(InvalidTransition):
        answer(pending, 1, "a", wanted="done", incident_status="new", now=NOW)
    assert (
        answer(alert("a", "accepted"), 1, "a", wanted="done", incident_status="new", now=NOW)
        == "done"
    )


def test_rounding_hides_the_point_within_its_cell() -> None:
    for dlat in range(-30, 31, 7):
        for dlon in range(-30, 31, 11):
            point = GeoPoint(lat=HERE.lat + dlat * 1e-4, lon=HERE.lon + dlon * 1e-4)
            rough = approximate(point, 200)
            assert distance_m(point, rough) <= 200 * math.sqrt(2) / 2 + 1
            # Every point of a cell gives the cell's centre: nothing finer leaks.
            assert approximate(rough, 200) == rough
    assert approximate(GeoPoint(lat=89.9999, lon=179.9999), 200).lon <= 180


def test_the_policy_file() -> None:
    known = load_incident_types()
    shipped = load_policy(None, known)
    assert shipped.incident_types <= set(known)
    assert shipped.radius_m == 2000
    with pytest.raises(ConfigurationError, match="child_lost"):
        policy_from_dict({"incident_types": ["child_lost"]}, known, "test")
    with pytest.raises(ConfigurationError, match="radius_m"):
        policy_from_dict({"incident_types": ["panic"], "radius_m": -1}, known, "test")
    with pytest.raises(ConfigurationError, match="max_per_incident"):
        policy_from_dict({"incident_types": ["panic"], "max_per_incident": 0}, known, "test")
    stale = policy_from_dict({"incident_types": ["panic"], "position_stale_s": None}, known, "t")
    assert stale.position_stale_s is None


def test_the_rule_loads_no_io_module() -> None:
    """In a fresh interpreter: the decisions import no database, Redis or web module."""
    probe = (
        "import sys, json\n"
        "import dispatch.volunteers.decide, dispatch.volunteers.approx, dispatch.volunteers.views\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))
    for name in ("asyncpg", "redis", "fastapi", "starlette", "websockets", "httpx"):
        assert name not in loaded, name

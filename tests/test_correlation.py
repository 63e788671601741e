"""Reports of one emergency join one incident; the best location wins."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatch.core.correlate import is_better, may_join_nearby, sender_window_applies, tel_key
from geo.location import Location
from geo.points import GeoPoint
from tests.conftest import LiveServer, event_of, receive_until, wait_for
from tests.test_gateways_telecom_sms import CALLS, SMS, aml_sms_text, call, post, zone_point


async def test_aml_sms_after_a_call_locates_the_calls_incident(live: LiveServer) -> None:
    """AML arrives seconds after the voice call: one incident, located by the AML."""
    async with live.console() as console:
        await console.recv()
        first = (await post(live, CALLS, "telecom", call("c-1"))).json()
        assert first["status"] == "awaiting_location"
        point = zone_point("chandrasekharpur")
        sms = {
            "message_id": "m-1",
            "from": "09437012345",  # same subscriber as +919437012345, written another way
            "to": "112",
            "text": aml_sms_text(point),
        }
        second = (await post(live, SMS, "sms", sms)).json()
        assert second["incident_id"] == first["incident_id"]
        assert second["duplicate_of"] == first["incident_id"]
        assert second["status"] == "offered"
        moved, _ = await receive_until(console, event_of("incident.location_updated"))
        assert moved["event"]["data"]["zone"]["id"] == "chandrasekharpur"
        assert moved["event"]["data"]["previous"] is None
        await receive_until(console, event_of("assignment.offered"))
    assert await live.count("incidents") == 1
    row = await live.db.fetchrow("SELECT lat, lon, radius_m, zone_id, status FROM incidents")
    assert (row["zone_id"], row["status"], row["radius_m"]) == ("chandrasekharpur", "offered", 12)


async def test_three_callers_reporting_one_emergency_make_one_incident(live: LiveServer) -> None:
    point = zone_point("laxmisagar")
    answers = []
    for n, (dlat, radius) in enumerate(((0.0, 300.0), (0.0003, 80.0), (-0.0002, 500.0))):
        body = {
            "call_id": f"c-{n}",
            "caller": f"+91943700000{n}",
            "location": {"lat": point.lat + dlat, "lon": point.lon, "radius_m": radius},
        }
        answers.append((await post(live, CALLS, "telecom", body)).json())
    assert len({a["incident_id"] for a in answers}) == 1
    first_id = answers[0]["incident_id"]
    assert [a["duplicate_of"] for a in answers] == [None, first_id, first_id]
    assert await live.count("reports") == 3
    # The 80 m fix is the best of the three.
    assert await live.db.fetchval("SELECT radius_m FROM incidents") == 80.0


async def test_a_moving_victims_panics_update_one_incident(live: LiveServer) -> None:
    start = zone_point("capital")
    trigger: dict[str, Any] = {"device_id": "phone-7"}
    first = await live.post_panic(
        {
            **trigger,
            "trigger_id": "1",
            "location": {
                "lat": start.lat,
                "lon": start.lon,
                "accuracy_m": 10.0,
                "time": "2026-11-30T01:00:00Z",
            },
        }
    )
    moved = GeoPoint(lat=start.lat + 0.002, lon=start.lon)
    second = await live.post_panic(
        {
            **trigger,
            "trigger_id": "2",
            "location": {
                "lat": moved.lat,
                "lon": moved.lon,
                "accuracy_m": 15.0,
                "time": "2026-11-30T01:00:30Z",
            },
        }
    )
    assert second.json()["incident_id"] == first.json()["incident_id"]
    row = await live.db.fetchrow("SELECT lat, radius_m FROM incidents")
    assert (row["lat"], row["radius_m"]) == (moved.lat, 15.0)
    assert await live.count("assignments") == 1


async def test_a_panic_button_burst_is_one_incident(live: LiveServer) -> None:
    """A phone's panic button: five calls and an SMS at once, from one number."""
    point = zone_point("nayapalli")
    number = "+919861000111"
    sends = [
        post(live, CALLS, "telecom", {"call_id": f"burst-{n}", "caller": number}) for n in range(5)
    ]
    sends.append(
        post(
            live,
            SMS,
            "sms",
            {"message_id": "burst-sms", "from": number, "text": aml_sms_text(point)},
        )
    )
    answers = [r.json() for r in await asyncio.gather(*sends)]
    assert len({a["incident_id"] for a in answers}) == 1
    assert await live.count("incidents") == 1
    assert await live.count("reports") == 6
    assert await live.db.fetchval("SELECT zone_id FROM incidents") == "nayapalli"


async def test_two_panics_from_two_devices_side_by_side_stay_two(live: LiveServer) -> None:
    """Proximity never joins personal emergencies: two devices are two people."""
    point = zone_point("sahidnagar")
    fix = {"lat": point.lat, "lon": point.lon, "accuracy_m": 5.0}
    a = await live.post_panic({"trigger_id": "a", "device_id": "one", "location": fix})
    b = await live.post_panic({"trigger_id": "b", "device_id": "two", "location": fix})
    assert a.json()["incident_id"] != b.json()["incident_id"]
    assert b.json()["duplicate_of"] is None


async def test_the_assigned_mdt_follows_its_incidents_location(live: LiveServer) -> None:
    """The offered unit's MDT gets the victim's new position; other MDTs get nothing."""
    start = zone_point("mancheswar")
    fix = {"lat": start.lat, "lon": start.lon, "accuracy_m": 20.0}
    first = (await live.post_panic({"trigger_id": "1", "device_id": "p", "location": fix})).json()
    unit = await live.db.fetchval("SELECT unit_id FROM assignments")
    other = next(u for u in live.credentials["units"] if u != unit)
    async with live.mdt(unit) as mdt, live.mdt(other) as bystander:
        await mdt.recv()
        await bystander.recv()
        better = {"lat": start.lat + 0.001, "lon": start.lon, "accuracy_m": 5.0}
        await live.post_panic({"trigger_id": "2", "device_id": "p", "location": better})
        moved, _ = await receive_until(mdt, event_of("incident.location_updated"))
        assert moved["event"]["incident_id"] == first["incident_id"]
        assert moved["event"]["data"]["location"]["radius_m"] == 5.0
        await bystander.send('{"type": "ping"}')
        _, before = await receive_until(bystander, lambda m: m["type"] == "pong")
        assert before == []


async def test_operator_splits_a_wrongly_attached_report(live: LiveServer) -> None:
    """Two different emergencies reported close by: the operator splits them apart; the
    split-off report becomes an incident of its own and is dispatched."""
    point = zone_point("laxmisagar")
    bodies = [
        {
            "call_id": f"c-{n}",
            "caller": f"+91943711111{n}",
            "location": {"lat": point.lat, "lon": point.lon, "radius_m": 50.0},
        }
        for n in range(2)
    ]
    first, second = [(await post(live, CALLS, "telecom", b)).json() for b in bodies]
    assert second["duplicate_of"] == first["incident_id"]
    auth = {"Authorization": f"Bearer {live.operator_token}"}
    response = await live.http.post(
        f"/v1/reports/{second['report_id']}/split",
        json={"reason": "a different house: domestic quarrel, not the accident"},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    split = response.json()
    assert split["id"] != first["incident_id"]
    assert [r["id"] for r in split["reports"]] == [second["report_id"]]
    assert split["status"] == "offered"
    old = (await live.http.get(f"/v1/incidents/{first['incident_id']}", headers=auth)).json()
    assert [r["id"] for r in old["reports"]] == [first["report_id"]]
    assert old["events"][-1]["type"] == "incident.report_detached"

    only = await live.http.post(
        f"/v1/reports/{first['report_id']}/split", json={"reason": "x"}, headers=auth
    )
    assert only.status_code == 409
    assert "only report" in only.json()["detail"]


async def test_a_report_racing_a_close_makes_a_new_incident(live: LiveServer) -> None:
    """The operator closes the incident while the same device reports again: the report
    must not join the closed incident (it would never be dispatched)."""
    point = zone_point("capital")
    fix = {"lat": point.lat, "lon": point.lon, "accuracy_m": 10.0}
    first = (await live.post_panic({"trigger_id": "1", "device_id": "d", "location": fix})).json()
    control = live.services.control
    async with live.db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await control.close(conn, first["incident_id"], actor="op", disposition="resolved")
        racing = asyncio.create_task(
            live.post_panic({"trigger_id": "2", "device_id": "d", "location": fix})
        )
        closer = conn.get_server_pid()

        async def blocked_or_done() -> bool:
            # The report waits on the incident's row lock (or, wrongly, did not wait).
            waiting = await live.db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                closer,
            )
            return waiting > 0 or racing.done()

        await wait_for(blocked_or_done, what="the racing report waiting on the close")
        await tx.commit()
    second = (await racing).json()
    assert second["incident_id"] != first["incident_id"]
    assert second["duplicate_of"] is None
    assert second["status"] == "offered"


# The pure rules (dispatch/core/correlate.py), against their documented meaning.
def _fix(radius: float | None) -> Location:
    return Location(point=GeoPoint(lat=20.3, lon=85.8), radius_m=radius, method="gps")


T0 = datetime(2025, 1, 1, 10, 30, tzinfo=UTC)
T1 = T0 + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("new", "current", "new_time", "current_time", "better"),
    [
        (None, _fix(50), T1, T0, False),  # nothing new
        (_fix(50), None, None, None, True),  # anything beats no location
        (_fix(10), _fix(20), None, T0, True),  # smaller uncertainty, whatever the time
        (_fix(20), _fix(20), None, None, False),  # as good, not newer
        (_fix(20), _fix(20), T0, T0, False),  # as good, same time
        (_fix(40), _fix(20), T1, T0, True),  # newer, twice as uncertain: moving person
        (_fix(41), _fix(20), T1, T0, False),  # newer, more than twice
        (_fix(50), _fix(20), T1, T0, False),
        (_fix(40), _fix(20), T0, T1, False),  # older
        (_fix(40), _fix(20), None, T0, False),  # time unknown: not newer
        (_fix(40), _fix(20), T1, None, True),  # the current one has no time
        (_fix(None), _fix(50), T1, T0, False),  # unknown uncertainty never wins on time
        (_fix(50), _fix(None), None, None, True),  # a known radius beats an unknown one
    ],
)
def test_which_location_is_better(
    new: Location | None,
    current: Location | None,
    new_time: datetime | None,
    current_time: datetime | None,
    better: bool,
) -> None:
    assert is_better(new, current, new_time=new_time, current_time=current_time) is better


@pytest.mark.parametrize(
    ("number", "key"),
    [
        ("+919437012345", "tel:9437012345"),
        ("919437012345", "tel:9437012345"),
        ("09437012345", "tel:9437012345"),
        ("9437012345", "tel:9437012345"),
        ("+91 94370-12345", "tel:9437012345"),
        ("1234567", "tel:1234567"),
        ("123456", "tel:123456"),
        ("12345", None),
        ("unknown", None),
    ],
)
def test_a_phone_number_is_keyed_by_its_last_ten_digits(number: str, key: str | None) -> None:
    assert tel_key(number) == key


def test_which_keys_and_types_correlate() -> None:
    """A device matches its open incident however old, a phone number only within the
    window; personal emergencies never join a nearby incident by place alone."""
    assert sender_window_applies("device:abc") is False
    assert sender_window_applies("tel:9437012345") is True
    assert sender_window_applies("device-abc") is True
    assert may_join_nearby("panic") is False
    assert may_join_nearby("women_in_distress") is False
    assert may_join_nearby("fire") is True
    assert may_join_nearby("accident_injuries") is True

"""Blank calls become callback tasks; a panic or a spoken report makes them emergencies."""

from __future__ import annotations

from tests.conftest import LiveServer, event_of, receive_until
from tests.test_gateways_telecom_sms import CALLS, post, zone_point

NUMBER = "+919438000321"


def silent_call(call_id: str, **extra: object) -> dict[str, object]:
    return {"call_id": call_id, "caller": NUMBER, "call_state": "silent", **extra}


async def test_silent_call_is_a_callback_task_not_a_dispatch(live: LiveServer) -> None:
    point = zone_point("airfield")
    async with live.console() as console:
        await console.recv()
        location = {"lat": point.lat, "lon": point.lon, "radius_m": 900.0}
        answer = (await post(live, CALLS, "telecom", silent_call("s-1", location=location))).json()
        assert answer["status"] == "callback"
        task, _ = await receive_until(console, event_of("incident.callback_requested"))
        assert task["event"]["data"]["number"] == NUMBER
    assert await live.count("assignments") == 0


async def test_a_panic_from_the_same_phone_turns_the_callback_into_a_dispatch(
    live: LiveServer,
) -> None:
    point = zone_point("balianta")
    first = (await post(live, CALLS, "telecom", silent_call("s-1"))).json()
    assert first["status"] == "callback"
    fix = {"lat": point.lat, "lon": point.lon, "accuracy_m": 9.0}
    panic = await live.post_panic(
        {"trigger_id": "p", "device_id": "app-1", "user": {"phone": NUMBER}, "location": fix}
    )
    answer = panic.json()
    assert answer["incident_id"] == first["incident_id"]
    assert answer["status"] == "offered"
    row = await live.db.fetchrow("SELECT type, priority, zone_id FROM incidents")
    assert (row["type"], row["priority"], row["zone_id"]) == ("panic", 1, "balianta")


async def test_repeat_blank_caller_is_flagged_with_history(live: LiveServer) -> None:
    """Three blank calls in a day: the fourth report shows the pattern to operators."""
    for n in range(3):
        answer = (await post(live, CALLS, "telecom", silent_call(f"s-{n}"))).json()
        # Each is closed by the operator after a callback found nobody in need.
        await live.http.post(
            f"/v1/incidents/{answer['incident_id']}/close",
            json={"disposition": "blank call"},
            headers={"Authorization": f"Bearer {live.operator_token}"},
        )
    async with live.console() as console:
        await console.recv()
        await post(live, CALLS, "telecom", silent_call("s-3"))
        created, _ = await receive_until(console, event_of("incident.created"))
    history = created["event"]["data"]["caller_history"]
    assert history["incidents"] == 3
    assert history["blank_calls_24h"] == 3
    assert "repeat_blank_caller" in history["flags"]
    response = await live.http.get(
        "/v1/callers/09438000321", headers={"Authorization": f"Bearer {live.operator_token}"}
    )
    assert response.status_code == 200
    assert response.json()["incidents"] == 4

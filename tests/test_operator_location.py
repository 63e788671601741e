"""Operators place a call with no fix from the caller's words, and confirm a silent call
they called back: both then dispatch like any located emergency."""

from __future__ import annotations

from tests.conftest import LiveServer
from tests.test_gateways_telecom_sms import CALLS, post, zone_point
from tests.test_operator_control import _post as _op
from tests.test_silent_calls import silent_call
from tests.test_walking_skeleton import rows_written


async def test_a_voice_call_with_no_fix_is_placed_by_the_operator_and_dispatched(
    live: LiveServer,
) -> None:
    call = {"call_id": "v-1", "caller": "+919437000111"}
    answer = (await post(live, CALLS, "telecom", call)).json()
    assert answer["status"] == "awaiting_location"
    incident_id = answer["incident_id"]
    point = zone_point("capital")
    placed = await _op(
        live,
        f"/v1/incidents/{incident_id}/location",
        {"lat": point.lat, "lon": point.lon, "radius_m": 200.0, "reason": "geocoded: Kalpana"},
    )
    assert placed.status_code == 200, placed.text
    detail = placed.json()
    assert detail["status"] == "offered"
    assert detail["zone"]["id"] == "capital"
    assert detail["location"]["method"] == "operator"
    assert detail["location"]["radius_m"] == 200.0
    assert [a["status"] for a in detail["assignments"]] == ["offered"]
    moved = next(e for e in detail["events"] if e["type"] == "incident.location_updated")
    assert moved["data"]["reason"] == "geocoded: Kalpana"
    assert moved["data"]["report_id"] is None
    assert moved["actor"].startswith("operator:")


async def test_placing_a_dispatched_incident_moves_it_without_a_second_offer(
    live: LiveServer,
) -> None:
    """A caller's correction on an incident already offered moves it (the MDT sees the
    update); no new unit is sent."""
    first = zone_point("lingaraj")
    answer = await live.post_panic(
        {
            "trigger_id": "m-1",
            "device_id": "dev-m-1",
            "location": {"lat": first.lat, "lon": first.lon, "accuracy_m": 30.0},
        }
    )
    incident_id = answer.json()["incident_id"]
    second = zone_point("badagada")
    placed = await _op(
        live,
        f"/v1/incidents/{incident_id}/location",
        {"lat": second.lat, "lon": second.lon, "radius_m": 100.0, "reason": "caller: temple gate"},
    )
    assert placed.status_code == 200
    assert placed.json()["zone"]["id"] == "badagada"
    assert await live.count("assignments") == 1


async def test_bad_placements_are_refused_and_write_nothing(live: LiveServer) -> None:
    answer = await post(live, CALLS, "telecom", {"call_id": "v-2", "caller": "+919437000222"})
    incident_id = answer.json()["incident_id"]
    before = await rows_written(live)
    events = await live.count("events")
    path = f"/v1/incidents/{incident_id}/location"
    good = {"lat": 20.27, "lon": 85.83, "radius_m": 100.0, "reason": "x"}
    for bad in (
        {**good, "lat": 95.0},
        {**good, "lon": "85.83"},
        {**good, "radius_m": 0},
        {**good, "reason": ""},
        {k: v for k, v in good.items() if k != "reason"},
        {**good, "extra": 1},
    ):
        refused = await _op(live, path, bad)
        assert refused.status_code == 422, bad
    assert (await _op(live, "/v1/incidents/999/location", good)).status_code == 404
    closed = await _op(live, f"/v1/incidents/{incident_id}/close", {"disposition": "hoax"})
    assert closed.status_code == 200
    events += 1  # the close
    late = await _op(live, path, good)
    assert late.status_code == 409
    assert "closed" in late.json()["detail"]
    assert (await live.http.post(path, json=good)).status_code == 401
    assert await live.count("events") == events
    after = await rows_written(live)
    assert after["assignments"] == before["assignments"] == 0


async def test_a_silent_call_confirmed_after_the_callback_is_dispatched(
    live: LiveServer,
) -> None:
    point = zone_point("airfield")
    location = {"lat": point.lat, "lon": point.lon, "radius_m": 300.0}
    answer = (await post(live, CALLS, "telecom", silent_call("c-1", location=location))).json()
    assert answer["status"] == "callback"
    incident_id = answer["incident_id"]
    confirmed = await _op(
        live, f"/v1/incidents/{incident_id}/confirm", {"reason": "caller whispered: intruder"}
    )
    assert confirmed.status_code == 200, confirmed.text
    detail = confirmed.json()
    assert detail["status"] == "offered"
    kinds = [e["type"] for e in detail["events"]]
    assert kinds.index("incident.confirmed") < kinds.index("assignment.offered")
    again = await _op(live, f"/v1/incidents/{incident_id}/confirm", {"reason": "twice"})
    assert again.status_code == 409


async def test_a_confirmed_call_with_no_fix_waits_for_the_operator_to_place_it(
    live: LiveServer,
) -> None:
    answer = (await post(live, CALLS, "telecom", silent_call("c-2"))).json()
    incident_id = answer["incident_id"]
    confirmed = (
        await _op(live, f"/v1/incidents/{incident_id}/confirm", {"reason": "spoke on callback"})
    ).json()
    assert confirmed["status"] == "awaiting_location"
    assert confirmed["escalated"]
    point = zone_point("jatani")
    placed = await _op(
        live,
        f"/v1/incidents/{incident_id}/location",
        {"lat": point.lat, "lon": point.lon, "radius_m": 500.0, "reason": "caller: bus stand"},
    )
    assert placed.json()["status"] == "offered"


async def test_escalations_follow_the_cause_and_clear_when_a_unit_is_offered(
    live: LiveServer,
) -> None:
    """No location, then a place outside every jurisdiction: two different reasons, two
    escalations operators see; placed inside a zone and offered, the flag clears."""
    call = await post(live, CALLS, "telecom", {"call_id": "e-1", "caller": "+919437000333"})
    incident_id = call.json()["incident_id"]
    path = f"/v1/incidents/{incident_id}/location"
    outside = await _op(
        live, path, {"lat": 19.0, "lon": 80.0, "radius_m": 100.0, "reason": "caller: Raipur?"}
    )
    assert outside.json()["status"] == "queued"
    assert outside.json()["escalation_reason"].startswith("location outside every jurisdiction")
    point = zone_point("capital")
    inside = await _op(
        live, path, {"lat": point.lat, "lon": point.lon, "radius_m": 100.0, "reason": "corrected"}
    )
    detail = inside.json()
    assert detail["status"] == "offered"
    assert detail["escalated"] is False
    assert detail["escalation_reason"] is None
    escalations = [
        e["data"]["reason"] for e in detail["events"] if e["type"] == "incident.escalated"
    ]
    assert escalations[0] == "no usable location in the report"
    assert escalations[1].startswith("location outside every jurisdiction")
    assert len(escalations) == 2
    cleared = [e for e in detail["events"] if e["type"] == "incident.deescalated"]
    assert len(cleared) == 1
    assert cleared[0]["data"]["was"].startswith("location outside every jurisdiction")

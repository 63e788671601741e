"""Crew status reports from the MDT drive the unit and assignment lifecycles."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import nearest_police_unit, panic, zone_point


async def _command(mdt: Any, message: dict[str, Any]) -> dict[str, Any]:
    await mdt.send(json.dumps(message))
    reply, _ = await receive_until(mdt, lambda m: m["type"] in ("ack", "error"))
    return reply


async def test_crew_reports_through_to_available_complete_the_assignment(
    live: LiveServer,
) -> None:
    """Every transition is an event; finishing the job frees the unit."""
    point = zone_point("lingaraj")
    unit = await nearest_police_unit(live, "lingaraj", point)
    async with live.mdt(unit) as mdt, live.console() as console:
        await mdt.recv()
        await console.recv()
        incident_id = (await live.post_panic(panic(point))).json()["incident_id"]
        offer, _ = await receive_until(mdt, event_of("assignment.offered"))
        assignment_id = offer["event"]["data"]["assignment_id"]
        assert (await _command(mdt, {"type": "accept", "assignment_id": assignment_id}))[
            "type"
        ] == "ack"
        for status in ("en_route", "on_scene"):
            reply = await _command(mdt, {"type": "status", "status": status})
            assert reply["type"] == "ack", reply
        incident_status = await live.db.fetchval(
            "SELECT status FROM incidents WHERE id = $1", incident_id
        )
        assert incident_status == "on_scene"
        # A post from before the job, however it got there, does not outlive the job.
        await live.db.execute("UPDATE units SET post_lat = 1, post_lon = 1 WHERE id = $1", unit)
        assert (await _command(mdt, {"type": "status", "status": "available"}))["type"] == "ack"
        freed, _ = await receive_until(
            console, event_of("unit.status_changed", unit_id=unit, incident_id=incident_id)
        )
        while freed["event"]["data"]["to"] != "available":
            freed, _ = await receive_until(console, event_of("unit.status_changed", unit_id=unit))
        assert freed["event"]["data"]["assignment_status"] == "completed"
    assert await live.db.fetchval("SELECT status FROM units WHERE id = $1", unit) == "available"
    status = await live.db.fetchval("SELECT status FROM assignments WHERE id = $1", assignment_id)
    assert status == "completed"
    # The default standby rule (patrol) leaves the crew to its own patrol: no post.
    assert await live.db.fetchval("SELECT post_lat FROM units WHERE id = $1", unit) is None
    assert not await live.db.fetchval(
        "SELECT count(*) FROM events WHERE type = 'unit.post_assigned'"
    )


async def test_illegal_status_change_is_refused_and_changes_nothing(live: LiveServer) -> None:
    """An available unit cannot report itself on scene; the error names both states."""
    async with live.mdt("capital-pcr-1") as mdt:
        await mdt.recv()
        before = await live.count("events")
        reply = await _command(mdt, {"type": "status", "status": "on_scene"})
        assert reply["type"] == "error"
        assert reply["code"] == "InvalidTransition"
        assert "available" in reply["detail"]
        assert "so it cannot be on scene" in reply["detail"]
        bogus = await _command(mdt, {"type": "status", "status": "flying"})
        assert bogus["type"] == "error"
        garbage = await _command(mdt, {"type": "status"})
        assert garbage["code"] == "invalid_message"
    status = await live.db.fetchval("SELECT status FROM units WHERE id = 'capital-pcr-1'")
    assert status == "available"
    assert await live.count("events") == before


async def test_malformed_client_messages_get_an_error_not_a_dropped_socket(
    live: LiveServer,
) -> None:
    """A console that sends garbage is told so and stays connected."""
    async with live.console() as console:
        await console.recv()
        await console.send("{not json")
        reply = json.loads(await console.recv())
        assert reply["code"] == "invalid_json"
        await console.send(json.dumps({"type": "accept", "assignment_id": 1}))
        reply = json.loads(await console.recv())
        assert reply["code"] == "unknown_type"
        await console.send(json.dumps({"type": "ping"}))
        assert json.loads(await console.recv())["type"] == "pong"


async def test_bad_token_is_refused_with_a_reason(live: LiveServer) -> None:
    """A websocket with a wrong token gets an error and close code 4401."""
    import websockets

    async with websockets.connect(live.ws_url + "/v1/ws/mdt?token=wrong") as ws:
        message = json.loads(await ws.recv())
        assert message["code"] == "Unauthorized"
        await ws.wait_closed()
        assert ws.close_code == 4401


async def test_a_second_crew_does_not_move_the_incident_back_from_the_scene(
    live: LiveServer,
) -> None:
    """Police on scene, then the ambulance accepts and drives: the incident stays on
    scene (it only ever moves forward)."""
    answer = (
        await live.post_panic(panic(zone_point("jatani"), category="accident_injuries"))
    ).json()
    incident_id = answer["incident_id"]
    offers = {
        r["agency"]: (r["unit_id"], r["id"])
        for r in await live.db.fetch(
            "SELECT agency, unit_id, id FROM assignments WHERE incident_id = $1", incident_id
        )
    }
    police, police_offer = offers["police"]
    ambulance, ambulance_offer = offers["ambulance"]

    async def incident_status() -> str:
        status: str = await live.db.fetchval(
            "SELECT status FROM incidents WHERE id = $1", incident_id
        )
        return status

    async with live.mdt(police) as pcr, live.mdt(ambulance) as amb:
        await pcr.recv()
        await amb.recv()
        accepted = await _command(pcr, {"type": "accept", "assignment_id": police_offer})
        assert accepted["type"] == "ack"
        for status in ("en_route", "on_scene"):
            assert (await _command(pcr, {"type": "status", "status": status}))["type"] == "ack"
        assert await incident_status() == "on_scene"
        accepted = await _command(amb, {"type": "accept", "assignment_id": ambulance_offer})
        assert accepted["type"] == "ack"
        assert await incident_status() == "on_scene"
        assert (await _command(amb, {"type": "status", "status": "en_route"}))["type"] == "ack"
        assert await incident_status() == "on_scene"
    assert await live.db.fetchval("SELECT status FROM units WHERE id = $1", ambulance) == "en_route"
    # A report's event names the incident's new status only when it moved it (an accept
    # made it dispatched already; only the police on scene moved it since).
    moves = {
        (r["unit_id"], r["data"]["to"]): r["data"].get("incident_status")
        for r in await live.db.fetch(
            "SELECT unit_id, data FROM events WHERE type = 'unit.status_changed'"
            " AND data->>'to' IN ('en_route', 'on_scene') AND incident_id = $1",
            incident_id,
        )
    }
    assert moves == {
        (police, "en_route"): None,
        (police, "on_scene"): "on_scene",
        (ambulance, "en_route"): None,
    }

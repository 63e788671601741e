"""A panic trigger reaches a patrol unit's MDT, end to end, through real services."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from dispatch.demo import demo_zones
from geo.distance import distance_m
from geo.points import GeoPoint
from tests.conftest import LiveServer, event_of, receive_until

TABLES = ("incidents", "reports", "assignments", "events", "idempotency_keys")


def zone_point(zone_id: str) -> GeoPoint:
    """A point well inside a demo zone."""
    zone = next(z for z in demo_zones() if z.id == zone_id)
    return GeoPoint.from_shapely(zone.geometry.representative_point())


def panic(point: GeoPoint | None, trigger: str = "t-1", **extra: Any) -> dict[str, Any]:
    # One device per trigger: repeated triggers of one device join one incident.
    body: dict[str, Any] = {"trigger_id": trigger, "device_id": f"dev-{trigger}", **extra}
    if point is not None:
        body["location"] = {"lat": point.lat, "lon": point.lon, "accuracy_m": 12.0}
    return body


async def nearest_police_unit(live: LiveServer, zone_id: str, point: GeoPoint) -> str:
    response = await live.http.get(
        "/v1/units", headers={"Authorization": f"Bearer {live.operator_token}"}
    )
    units = [u for u in response.json() if u["agency"] == "police" and u["zone_id"] == zone_id]
    assert len(units) >= 2
    best = min(
        units,
        key=lambda u: distance_m(
            point, GeoPoint(lat=u["location"]["lat"], lon=u["location"]["lon"])
        ),
    )
    unit_id: str = best["id"]
    return unit_id


async def rows_written(live: LiveServer) -> dict[str, int]:
    return {table: await live.count(table) for table in TABLES}


async def test_panic_is_offered_to_nearest_unit_and_accept_is_stored(live: LiveServer) -> None:
    """Invariants 1-3: committed, claimed in PostgreSQL, every change an event on the bus."""
    point = zone_point("capital")
    nearest = await nearest_police_unit(live, "capital", point)
    other = next(u for u in live.credentials["units"] if u.startswith("capital-") and u != nearest)
    async with live.console() as console, live.mdt(nearest) as mdt, live.mdt(other) as bystander:
        for ws in (console, mdt, bystander):
            snapshot = json.loads(await ws.recv())
            assert snapshot["type"] == "snapshot"

        response = await live.post_panic(panic(point))
        assert response.status_code == 202, response.text
        answer = response.json()
        assert answer["status"] == "offered"
        assert answer["warnings"] == []
        incident_id = answer["incident_id"]

        offer, _ = await receive_until(mdt, event_of("assignment.offered"))
        assert offer["event"]["unit_id"] == nearest
        assert offer["event"]["incident_id"] == incident_id
        assert offer["event"]["data"]["incident"]["zone_id"] == "capital"
        created, _ = await receive_until(console, event_of("incident.created"))
        assert created["event"]["incident_id"] == incident_id
        assert created["event"]["data"]["zone"]["id"] == "capital"
        offered, _ = await receive_until(console, event_of("assignment.offered"))
        assert offered["event"]["unit_id"] == nearest
        assert int(offered["position"]) > int(created["position"])

        assignment_id = offer["event"]["data"]["assignment_id"]
        await mdt.send(json.dumps({"type": "accept", "assignment_id": assignment_id}))
        ack, _ = await receive_until(mdt, lambda m: m["type"] in ("ack", "error"))
        assert ack["type"] == "ack", ack
        accepted, _ = await receive_until(console, event_of("assignment.accepted", unit_id=nearest))
        assert accepted["event"]["data"]["assignment_id"] == assignment_id

        # The other unit of the zone saw none of it.
        await bystander.send(json.dumps({"type": "ping"}))
        _pong, before = await receive_until(bystander, lambda m: m["type"] == "pong")
        assert before == []

    status = await live.db.fetchval("SELECT status FROM assignments WHERE id = $1", assignment_id)
    assert status == "accepted"
    assert await live.db.fetchval("SELECT status FROM units WHERE id = $1", nearest) == "dispatched"
    detail = (
        await live.http.get(
            f"/v1/incidents/{incident_id}",
            headers={"Authorization": f"Bearer {live.operator_token}"},
        )
    ).json()
    assert detail["status"] == "dispatched"
    assert detail["zone"] == {"id": "capital", "name": "Capital Police Station"}
    assert detail["reports"][0]["channel"] == "panic"
    assert detail["assignments"] == [
        {**detail["assignments"][0], "unit_id": nearest, "status": "accepted"}
    ]
    # The unit's status changes of the job are on the incident's timeline too.
    assert [(e["type"], e["data"].get("to")) for e in detail["events"]] == [
        ("incident.created", None),
        ("unit.status_changed", "offered"),
        ("assignment.offered", None),
        ("assignment.accepted", None),
        ("unit.status_changed", "dispatched"),
    ]


async def test_bad_credentials_get_401_and_write_nothing(live: LiveServer) -> None:
    """Invariant 7: a bad signature, unknown gateway or stale timestamp changes nothing."""
    body = json.dumps(panic(zone_point("capital"))).encode()
    cases = {
        "wrong signature": live.signed_headers(body, secret="not-the-secret"),
        "unknown gateway": {**live.signed_headers(body), "X-ERSS-Gateway": "nobody"},
        "stale timestamp": live.signed_headers(body, timestamp=int(time.time()) - 301),
        "wrong channel": live.signed_headers(body, gateway="sms"),
        "no signature": {"Content-Type": "application/json", "Idempotency-Key": "k"},
    }
    for name, headers in cases.items():
        response = await live.http.post("/v1/gateways/panic", content=body, headers=headers)
        assert response.status_code == 401, (name, response.text)
        assert response.json()["detail"], name
    assert await rows_written(live) == dict.fromkeys(TABLES, 0)


async def test_malformed_requests_get_422_and_write_nothing(live: LiveServer) -> None:
    """Invariant 7: malformed envelopes are refused with the field named."""
    point = zone_point("capital")
    bodies = {
        "not json": b"{this is not json",
        "no device id": json.dumps({"trigger_id": "t-1"}).encode(),
        "trigger id as number": json.dumps(
            {"trigger_id": 7, "device_id": "d", "location": {"lat": 20.2, "lon": point.lon}}
        ).encode(),
        "array": b"[]",
    }
    for name, body in bodies.items():
        response = await live.http.post(
            "/v1/gateways/panic", content=body, headers=live.signed_headers(body)
        )
        assert response.status_code == 422, (name, response.text)
        assert response.json()["detail"], name
    missing = live.signed_headers(bodies["no device id"])
    assert any(
        d["loc"][-1] == "device_id"
        for d in (
            await live.http.post(
                "/v1/gateways/panic", content=bodies["no device id"], headers=missing
            )
        ).json()["fields"]
    )
    no_key = live.signed_headers(b"{}")
    del no_key["Idempotency-Key"]
    response = await live.http.post("/v1/gateways/panic", content=b"{}", headers=no_key)
    assert response.status_code == 422
    assert await rows_written(live) == dict.fromkeys(TABLES, 0)


async def test_impossible_latitude_is_kept_as_an_escalated_incident(live: LiveServer) -> None:
    """Invariant 7: an emergency is never refused; the bad fix is dropped, not guessed."""
    async with live.console() as console:
        await console.recv()
        response = await live.post_panic(
            {"trigger_id": "t-9", "device_id": "d-9", "location": {"lat": 123, "lon": 85.8}}
        )
        assert response.status_code == 202, response.text
        answer = response.json()
        assert answer["status"] == "awaiting_location"
        assert any("latitude" in w for w in answer["warnings"])
        escalated, _ = await receive_until(console, event_of("incident.escalated"))
        assert escalated["event"]["incident_id"] == answer["incident_id"]
    row = await live.db.fetchrow("SELECT lat, lon, escalated FROM incidents")
    assert (row["lat"], row["lon"], row["escalated"]) == (None, None, True)
    assert await live.count("assignments") == 0


async def test_location_outside_every_zone_is_escalated_not_dropped(live: LiveServer) -> None:
    """A fix far outside the city (New Delhi) still makes an incident operators see."""
    async with live.console() as console:
        await console.recv()
        response = await live.post_panic(panic(GeoPoint(lat=28.6139, lon=77.2090)))
        assert response.status_code == 202
        assert response.json()["status"] == "queued"
        escalated, _ = await receive_until(console, event_of("incident.escalated"))
        assert "outside every jurisdiction" in escalated["event"]["data"]["reason"]
    assert await live.count("incidents") == 1
    assert await live.count("assignments") == 0


async def test_idempotency_key_replays_the_answer_and_refuses_a_new_body(live: LiveServer) -> None:
    """Invariant 1: a gateway retry never makes a second incident."""
    point = zone_point("sahidnagar")
    first = await live.post_panic(panic(point), key="delivery-1")
    again = await live.post_panic(panic(point), key="delivery-1")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    different = await live.post_panic(panic(point, trigger="t-2"), key="delivery-1")
    assert different.status_code == 409
    assert await live.count("incidents") == 1
    assert await live.count("assignments") == 1


async def test_concurrent_panics_for_one_free_unit_one_claim_wins(live: LiveServer) -> None:
    """Invariant 2: the conditional UPDATE lets exactly one transaction claim a unit."""
    await live.db.execute(
        "UPDATE units SET status = 'off_duty' WHERE id <> 'capital-pcr-1' AND agency = 'police'"
    )
    point = zone_point("capital")
    responses = await asyncio.gather(
        *(live.post_panic(panic(point, trigger=f"race-{n}")) for n in range(2))
    )
    assert sorted(r.json()["status"] for r in responses) == ["offered", "queued"]
    rows = await live.db.fetch("SELECT unit_id, status FROM assignments")
    assert [(r["unit_id"], r["status"]) for r in rows] == [("capital-pcr-1", "offered")]


async def test_decline_offers_the_next_unit(live: LiveServer) -> None:
    """A decline releases the unit and offers the incident to the next candidate."""
    point = zone_point("nayapalli")
    nearest = await nearest_police_unit(live, "nayapalli", point)
    async with live.mdt(nearest) as mdt:
        await mdt.recv()
        answer = (await live.post_panic(panic(point))).json()
        offer, _ = await receive_until(mdt, event_of("assignment.offered"))
        await mdt.send(
            json.dumps(
                {"type": "decline", "assignment_id": offer["event"]["data"]["assignment_id"]}
            )
        )
        ack, _ = await receive_until(mdt, lambda m: m["type"] in ("ack", "error"))
        assert ack["type"] == "ack"
    rows = await live.db.fetch(
        "SELECT unit_id, status FROM assignments WHERE incident_id = $1 ORDER BY id",
        answer["incident_id"],
    )
    assert rows[0]["unit_id"] == nearest
    assert rows[0]["status"] == "declined"
    assert rows[1]["unit_id"] != nearest
    assert rows[1]["status"] == "offered"
    assert await live.db.fetchval("SELECT status FROM units WHERE id = $1", nearest) == "available"


async def test_mdt_cannot_accept_another_units_offer(live: LiveServer) -> None:
    """An MDT sees and answers only its own unit's offers."""
    point = zone_point("capital")
    nearest = await nearest_police_unit(live, "capital", point)
    intruder = "laxmisagar-pcr-1"
    await live.post_panic(panic(point))
    assignment_id = await live.db.fetchval("SELECT id FROM assignments")
    async with live.mdt(intruder) as mdt:
        await mdt.recv()
        await mdt.send(json.dumps({"type": "accept", "assignment_id": assignment_id}))
        reply, _ = await receive_until(mdt, lambda m: m["type"] in ("ack", "error"))
    assert reply["type"] == "error"
    assert reply["code"] == "NotFound"
    status = await live.db.fetchval("SELECT status FROM assignments WHERE id = $1", assignment_id)
    assert status == "offered"
    assert await live.db.fetchval("SELECT unit_id FROM assignments") == nearest


async def test_console_resumes_after_its_last_position(live: LiveServer) -> None:
    """Invariant 4: a reconnecting console gets exactly the events it missed."""
    async with live.console() as console:
        await console.recv()
        await live.post_panic(panic(zone_point("capital"), trigger="a"))
        first, _ = await receive_until(console, event_of("assignment.offered"))
    for n in range(3):
        await live.post_panic(panic(zone_point("infocity"), trigger=f"b{n}"))
    expected = await live.db.fetchval(
        "SELECT count(*) FROM events WHERE id > (SELECT id FROM events WHERE position = $1)",
        int(first["position"]),
    )
    async with live.console(after=first["position"]) as console:
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while len(got) < expected:
                message = json.loads(await console.recv())
                if message["type"] == "event":
                    got.append(message)
    positions = [int(m["position"]) for m in got]
    assert positions == sorted(positions)
    assert len(set(positions)) == expected
    assert min(positions) == int(first["position"]) + 1


async def test_console_misses_exactly_the_50_events_made_while_away(live: LiveServer) -> None:
    """Invariant 4: disconnect, 50 events happen, reconnect with the last position: exactly
    those 50, in order, then live."""
    async with live.console() as console:
        await console.recv()
        await live.post_panic(panic(zone_point("capital"), trigger="before"))
        seen, _ = await receive_until(console, event_of("assignment.offered"))
        last = seen["position"]
    before = await live.count("events")
    assert before == int(last)
    incident_id = (await live.post_panic(panic(None, trigger="away"))).json()["incident_id"]
    headers = {"Authorization": f"Bearer {live.operator_token}"}
    note = {"text": "caller still on the line"}
    while await live.count("events") < before + 50:
        await live.http.post(f"/v1/incidents/{incident_id}/notes", json=note, headers=headers)
    assert await live.count("events") == before + 50
    async with live.console(after=last) as console:
        # Replay, then live: the relay may still be positioning the newest events, which
        # then arrive live after the "replayed" marker. Together: no gap, no duplicate.
        got = []
        async with asyncio.timeout(10):
            while len(got) < 50:
                message = json.loads(await console.recv())
                if message["type"] == "event":
                    got.append(message)
        assert [int(m["position"]) for m in got] == list(range(int(last) + 1, int(last) + 51))
        await live.post_panic(panic(zone_point("capital"), trigger="live"))
        live_event, _ = await receive_until(console, event_of("incident.created"))
        assert int(live_event["position"]) == int(last) + 51


async def test_resume_beyond_the_log_gets_a_fresh_snapshot_saying_why(live: LiveServer) -> None:
    async with live.console(after="9999999999") as console:
        message = json.loads(await console.recv())
    assert message["type"] == "snapshot"
    assert "beyond" in message["reason"]

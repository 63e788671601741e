"""SHOUT volunteers end to end (issue 18): real HTTP, real websockets, real PostgreSQL.

Who is alerted (inside the radius, at most N, nearest first), what they are told
(rounded before accepting, exact after), never two incidents at once, stand-down,
expiry, closing, opt-out and deletion, and a volunteer token that opens nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from dispatch.demo import load_demo
from dispatch.settings import Settings
from dispatch.volunteers import alerts
from dispatch.volunteers.approx import approximate
from dispatch.volunteers.decide import Pick
from geo.distance import distance_m
from geo.points import GeoPoint
from tests.conftest import LiveServer, event_of, receive_until, wait_for
from tests.test_walking_skeleton import panic, zone_point

ZONE = "capital"
POLICY: dict[str, Any] = {
    "incident_types": ["women_in_distress", "panic"],
    "radius_m": 2000,
    "max_per_incident": 2,
    "alert_ttl_s": 120,
    "approx_grid_m": 200,
    "position_stale_s": 900,
    "poll_s": 0.2,
}


@pytest.fixture
def policy_overrides() -> dict[str, Any]:
    """Changes to POLICY for one test (parametrised where a test needs them)."""
    return {}


@pytest.fixture
def settings(settings: Settings, tmp_path: Path, policy_overrides: dict[str, Any]) -> Settings:
    """The suite's settings with this module's volunteer policy."""
    path = tmp_path / "volunteers.json"
    path.write_text(json.dumps({**POLICY, **policy_overrides}))
    return settings.model_copy(update={"volunteers_file": path})


@pytest.fixture
async def city(live: LiveServer) -> LiveServer:
    """The live demo city, its own volunteers unavailable (the tests place their own)."""
    await live.db.execute("UPDATE volunteers SET available = false")
    return live


def offset(point: GeoPoint, *, north_m: float = 0.0, east_m: float = 0.0) -> GeoPoint:
    """A point this many metres north and east of ``point``."""
    lat = point.lat + north_m / 111_320.0
    lon = point.lon + east_m / (111_320.0 * math.cos(math.radians(point.lat)))
    return GeoPoint(lat=lat, lon=lon)


def operator(live: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.operator_token}"}


@dataclass
class Volunteer:
    """A registered volunteer and their open socket."""

    id: str
    token: str
    ws: Any


async def register(live: LiveServer, name: str, *, verified: bool = True) -> tuple[str, str]:
    answer = await live.http.post(
        "/v1/volunteers",
        json={
            "name": name,
            "phone": f"+91 94370 {sum(map(ord, name)):05d}",
            "home_area": ZONE,
            "languages": ["or", "en"],
            "police_verified": verified,
        },
        headers=operator(live),
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return body["id"], body["token"]


def connect(live: LiveServer, token: str) -> Any:
    return websockets.connect(
        live.ws_url + "/v1/ws/volunteer", additional_headers={"Authorization": f"Bearer {token}"}
    )


async def enrol(
    live: LiveServer, stack: contextlib.AsyncExitStack, name: str, where: GeoPoint
) -> Volunteer:
    """Register a verified volunteer, connect, send a position and become available."""
    volunteer_id, token = await register(live, name)
    ws = await stack.enter_async_context(connect(live, token))
    snapshot = json.loads(await ws.recv())
    assert snapshot["type"] == "snapshot"
    assert snapshot["volunteer"]["id"] == volunteer_id
    await ws.send(json.dumps({"type": "location", "lat": where.lat, "lon": where.lon}))
    await ws.send(json.dumps({"type": "availability", "available": True}))
    await receive_until(ws, lambda m: m.get("type") == "ack" and m["request"] == "availability")
    return Volunteer(volunteer_id, token, ws)


def alert(state: str) -> Any:
    return lambda m: m.get("type") == "alert" and m["alert"]["state"] == state


async def incident_at(live: LiveServer, point: GeoPoint, trigger: str) -> int:
    answer = await live.post_panic(panic(point, trigger=trigger))
    assert answer.status_code == 202, answer.text
    incident_id: int = answer.json()["incident_id"]
    return incident_id


async def states(live: LiveServer, incident_id: int) -> dict[str, str]:
    rows = await live.db.fetch(
        "SELECT volunteer_id, state FROM volunteer_alerts WHERE incident_id = $1", incident_id
    )
    return {r["volunteer_id"]: r["state"] for r in rows}


async def rule_has_run(live: LiveServer) -> None:
    """Wait until a whole pass of the alerting rule began after now."""
    start = live.services.volunteers.passes

    async def two_more() -> bool:
        return live.services.volunteers.passes >= start + 2

    await wait_for(two_more, what="two passes of the alerting rule")


async def answer(v: Volunteer, kind: str, alert_id: int) -> dict[str, Any]:
    await v.ws.send(json.dumps({"type": kind, "alert_id": alert_id}))
    reply, _ = await receive_until(
        v.ws, lambda m: m.get("type") in ("ack", "error") and m.get("request") == kind
    )
    return reply


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as opened:
        yield opened


async def test_the_nearest_inside_the_radius_are_alerted_at_most_n(
    city: LiveServer, stack: contextlib.AsyncExitStack
) -> None:
    here = zone_point(ZONE)
    a = await enrol(city, stack, "A", offset(here, north_m=300))
    b = await enrol(city, stack, "B", offset(here, east_m=900))
    c = await enrol(city, stack, "C", offset(here, north_m=-1500))
    # 2.4 km away: inside the square the query reads, outside the 2 km circle.
    d = await enrol(city, stack, "D", offset(here, north_m=-1700, east_m=-1700))
    incident_id = await incident_at(city, here, "radius")

    got_a, _ = await receive_until(a.ws, alert("alerted"))
    got_b, _ = await receive_until(b.ws, alert("alerted"))
    await rule_has_run(city)
    assert await states(city, incident_id) == {a.id: "alerted", b.id: "alerted"}, "N = 2"
    listed = await city.http.get(f"/v1/incidents/{incident_id}/volunteers", headers=operator(city))
    assert listed.status_code == 200, listed.text
    by_id = {x["volunteer_id"]: x for x in listed.json()["alerts"]}
    assert abs(by_id[a.id]["distance_m"] - 300) <= 5
    assert abs(by_id[b.id]["distance_m"] - 900) <= 5
    assert by_id[a.id]["name"] == "A"
    assert by_id[a.id]["position"] is not None

    # A declines: the room goes to the next nearest inside the radius, never to D.
    assert (await answer(a, "decline", got_a["alert"]["alert_id"]))["type"] == "ack"
    got_c, _ = await receive_until(c.ws, alert("alerted"))
    assert got_c["alert"]["distance_m"] == 1500
    await rule_has_run(city)
    assert await states(city, incident_id) == {
        a.id: "declined",
        b.id: "alerted",
        c.id: "alerted",
    }
    assert got_b["alert"]["incident_type"] == "panic"
    # B declines too: room again, and nobody left inside the radius; D stays out.
    assert (await answer(b, "decline", got_b["alert"]["alert_id"]))["type"] == "ack"
    await rule_has_run(city)
    assert d.id not in await states(city, incident_id), "2.4 km is outside the 2 km radius"


async def test_the_location_is_rounded_until_accepted_then_exact(
    city: LiveServer, stack: contextlib.AsyncExitStack
) -> None:
    here = zone_point(ZONE)
    a = await enrol(city, stack, "A", offset(here, north_m=400))
    async with city.console() as console:
        await console.recv()
        incident_id = await incident_at(city, here, "rounding")
        row = await city.db.fetchrow("SELECT lat, lon FROM incidents WHERE id = $1", incident_id)
        exact = GeoPoint(lat=row["lat"], lon=row["lon"])

        got, _ = await receive_until(a.ws, alert("alerted"))
        told = got["alert"]
        rough = GeoPoint(lat=told["location"]["lat"], lon=told["location"]["lon"])
        assert told["location"]["exact"] is False
        assert rough == approximate(exact, 200)
        assert rough != exact
        assert distance_m(rough, exact) <= 150
        assert "consent" not in told
        assert "incident_id" not in told
        await receive_until(console, event_of("volunteer.alerted", incident_id=incident_id))

        consent = await city.http.post(
            f"/v1/incidents/{incident_id}/volunteer-consent",
            json={"consent": "given"},
            headers=operator(city),
        )
        assert consent.status_code == 200, consent.text
        reply = await answer(a, "accept", told["alert_id"])
        assert reply["type"] == "ack", reply
        after = reply["alert"]
        assert after["state"] == "accepted"
        assert after["location"]["exact"] is True
        assert (after["location"]["lat"], after["location"]["lon"]) == (exact.lat, exact.lon)
        assert after["consent"] == "given"
        seen, _ = await receive_until(
            console, event_of("volunteer.accepted", incident_id=incident_id)
        )
        assert seen["event"]["data"]["volunteer_id"] == a.id
        assert "name" not in seen["event"]["data"], "no personal data in the event log"

    # A reconnecting volunteer's snapshot carries the same exact view.
    async with connect(city, a.token) as again:
        snapshot = json.loads(await again.recv())
        [held] = snapshot["alerts"]
        assert held["location"]["exact"] is True
        assert held["consent"] == "given"


async def test_the_location_follows_the_incident_and_a_refusal_stands_all_down(
    city: LiveServer, stack: contextlib.AsyncExitStack
) -> None:
    here = zone_point(ZONE)
    a = await enrol(city, stack, "A", offset(here, north_m=300))
    b = await enrol(city, stack, "B", offset(here, north_m=-600))
    incident_id = await incident_at(city, here, "moving")
    got, _ = await receive_until(a.ws, alert("alerted"))
    await receive_until(b.ws, alert("alerted"))
    await answer(a, "accept", got["alert"]["alert_id"])
    moved = offset(here, east_m=450)
    placed = await city.http.post(
        f"/v1/incidents/{incident_id}/location",
        json={"lat": moved.lat, "lon": moved.lon, "radius_m": 30.0, "reason": "caller's words"},
        headers=operator(city),
    )
    assert placed.status_code == 200, placed.text
    row = await city.db.fetchrow("SELECT lat, lon FROM incidents WHERE id = $1", incident_id)
    now_at = GeoPoint(lat=row["lat"], lon=row["lon"])
    assert distance_m(now_at, here) > 300, "the operator's placement took"

    def told_at(state: str, where: GeoPoint) -> Any:
        def match(m: dict[str, Any]) -> bool:
            loc = m.get("alert", {}).get("location") or {}
            return alert(state)(m) and (loc.get("lat"), loc.get("lon")) == (where.lat, where.lon)

        return match

    await receive_until(a.ws, told_at("accepted", now_at))
    await receive_until(b.ws, told_at("alerted", approximate(now_at, 200)))

    refused = await city.http.post(
        f"/v1/incidents/{incident_id}/volunteer-consent",
        json={"consent": "refused"},
        headers=operator(city),
    )
    assert refused.status_code == 200, refused.text
    for v in (a, b):
        down, _ = await receive_until(v.ws, alert("stood_down"))
        assert down["alert"]["reason"] == "consent_refused"
    await rule_has_run(city)
    assert set((await states(city, incident_id)).values()) == {"stood_down"}


async def test_a_volunteer_is_never_on_two_incidents_at_once(
    city: LiveServer, stack: contextlib.AsyncExitStack
) -> None:
    here = zone_point(ZONE)
    a = await enrol(city, stack, "A", offset(here, north_m=200))
    first = await incident_at(city, here, "first")
    got, _ = await receive_until(a.ws, alert("alerted"))
    second = await incident_at(city, offset(here, east_m=500), "second")
    await rule_has_run(city)
    assert a.id not in await states(city, second), "alerted while alerted to another"
    assert (await answer(a, "accept", got["alert"]["alert_id"]))["type"] == "ack"
    await rule_has_run(city)
    assert a.id not in await states(city, second), "alerted while helping at another"
    # Done at the first: free again, and the second still wants help.
    assert (await answer(a, "done", got["alert"]["alert_id"]))["type"] == "ack"
    await receive_until(a.ws, alert("alerted"))
    assert await states(city, second) == {a.id: "alerted"}
    assert await states(city, first) == {a.id: "done"}


async def test_two_instances_claiming_at_once_never_double_claim(city: LiveServer) -> None:
    """The claim is conditional in PostgreSQL: of two transactions alerting one volunteer
    to two incidents at the same moment, exactly one succeeds."""
    here = zone_point(ZONE)
    volunteer_id, _token = await register(city, "V")
    # Available but with no position: the running rule never picks them itself.
    await city.db.execute("UPDATE volunteers SET available = true WHERE id = $1", volunteer_id)
    one = await incident_at(city, here, "claim-1")
    two = await incident_at(city, offset(here, east_m=600), "claim-2")
    schema = city.settings.db_schema
    async with city.db.acquire() as first, city.db.acquire() as second:
        tx1, tx2 = first.transaction(), second.transaction()
        await tx1.start()
        await tx2.start()
        won = await alerts.claim(first, schema, one, Pick(volunteer_id, 100.0), ttl_s=60)
        racing = asyncio.create_task(
            alerts.claim(second, schema, two, Pick(volunteer_id, 100.0), ttl_s=60)
        )
        await asyncio.sleep(0)  # let the second insert reach the unique index and wait
        await tx1.commit()
        lost = await racing
        await tx2.commit()
    assert won is not None
    assert lost is None
    assert (
        await city.db.fetchval(
            "SELECT count(*) FROM volunteer_alerts WHERE volunteer_id = $1", volunteer_id
        )
        == 1
    )


async def test_an_operator_stands_a_volunteer_down(
    city: LiveServer, stack: contextlib.AsyncExitStack
) -> None:
    here = zone_point(ZONE)
    a = await enrol(city, stack, "A", offset(here, north_m=250))
    incident_id = await incident_at(city, here, "stand-down")
    got, _ = await receive_until(a.ws, alert("alerted"))
    await answer(a, "accept", got["alert"]["alert_id"])
    async with city.console() as console:
        await console.recv()
        path = f"/v1/incidents/{incident_id}/volunteers/{a.id}/stand-down"
        done = await city.http.post(
            path, json={"reason": "police on scene"}, headers=operator(city)
        )
        assert done.status_code == 200, done.text
        down, _ = await receive_until(a.ws, alert("stood_down"))
        assert down["alert"]["reason"] == "police on scene"
        assert "location" not in down["alert"]
        await receive_until(console, event_of("volunteer.stood_down", incident_id=incident_id))
    again = await city.http.post(path, json={"reason": "twice"}, headers=operator(city))
    assert again.status_code == 409, again.text
    await rule_has_run(city)
    assert await states(city, incident_id) == {a.id: "stood_down"}, "not alerted again"


@pytest.mark.parametrize("policy_overrides", [{"alert_ttl_s": 1.0, "max_per_incident": 1}])
async def test_unanswered_alerts_expire_and_pass_on(
    city: LiveServer, stack: contextlib.AsyncExitStack
) -> None:
    here = zone_point(ZONE)
    a = await enrol(city, stack, "A", offset(here, north_m=300))
    b = await enrol(city, stack, "B", offset(here, north_m=700))
    incident_id = await incident_at(city, here, "expiry")
    got, _ = await receive_until(a.ws, alert("alerted"))
    lapsed, _ = await receive_until(a.ws, alert("expired"))
    assert lapsed["alert"]["alert_id"] == got["alert"]["alert_id"]
    await receive_until(b.ws, alert("alerted"))
    late = await answer(a, "accept", got["alert"]["alert_id"])
    assert (late["type"], late["error"]) == ("error", "InvalidTransition"), late
    assert (await states(city, incident_id))[a.id] == "expired"


async def test_closing_the_incident_stands_everyone_down(
    city: LiveServer, stack: contextlib.AsyncExitStack
) -> None:
    here = zone_point(ZONE)
    a = await enrol(city, stack, "A", offset(here, north_m=300))
    b = await enrol(city, stack, "B", offset(here, east_m=600))
    incident_id = await incident_at(city, here, "closing")
    got, _ = await receive_until(a.ws, alert("alerted"))
    await receive_until(b.ws, alert("alerted"))
    await answer(a, "accept", got["alert"]["alert_id"])
    closed = await city.http.post(
        f"/v1/incidents/{incident_id}/close",
        json={"disposition": "resolved"},
        headers=operator(city),
    )
    assert closed.status_code == 200, closed.text
    for v in (a, b):
        down, _ = await receive_until(v.ws, alert("stood_down"))
        assert down["alert"]["reason"] == "incident_closed"
    c = await enrol(city, stack, "C", offset(here, north_m=-100))
    await rule_has_run(city)
    assert await states(city, incident_id) == {a.id: "stood_down", b.id: "stood_down"}
    refused = await answer(a, "done", got["alert"]["alert_id"])
    assert refused["type"] == "error"
    assert c.id not in await states(city, incident_id)


async def _refused(ws: Any) -> tuple[dict[str, Any], int]:
    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None, "a close frame, not a dropped connection"
    return message, closed.value.rcvd.code


async def test_a_volunteer_token_opens_nothing_but_its_own_alerts(
    city: LiveServer, stack: contextlib.AsyncExitStack
) -> None:
    """The REST side is in test_authz_matrix (every operator route, 401); here the
    sockets, and another volunteer's alert."""
    here = zone_point(ZONE)
    a = await enrol(city, stack, "A", offset(here, north_m=300))
    b = await enrol(city, stack, "B", offset(here, north_m=-5000))  # far: never alerted
    for path in ("/v1/ws/console", "/v1/ws/mdt"):
        async with websockets.connect(
            city.ws_url + path, additional_headers={"Authorization": f"Bearer {a.token}"}
        ) as ws:
            message, code = await _refused(ws)
            assert (message["error"], code) == ("Unauthorized", 4401), path
        async with websockets.connect(city.ws_url + path) as ws:
            await ws.send(json.dumps({"type": "auth", "token": a.token}))
            message, code = await _refused(ws)
            assert (message["error"], code) == ("Unauthorized", 4401), path
            assert a.token not in json.dumps(message)
    unit_token = next(iter(city.credentials["units"].values()))
    for other in (city.operator_token, unit_token, "made-up"):
        async with connect(city, other) as ws:
            message, code = await _refused(ws)
            assert (message["error"], code) == ("Unauthorized", 4401)

    await incident_at(city, here, "authz")
    got, _ = await receive_until(a.ws, alert("alerted"))
    stolen = await answer(b, "accept", got["alert"]["alert_id"])
    assert (stolen["type"], stolen["error"]) == ("error", "NotFound"), stolen
    missing = await answer(b, "accept", got["alert"]["alert_id"] + 1000)
    assert stolen["detail"].replace(str(got["alert"]["alert_id"]), "X") == missing[
        "detail"
    ].replace(str(got["alert"]["alert_id"] + 1000), "X"), (
        "another's alert reads as one that does not exist"
    )
    await b.ws.send(json.dumps({"type": "ping"}))
    _, before_pong = await receive_until(b.ws, lambda m: m.get("type") == "pong")
    assert not [m for m in before_pong if m.get("type") == "alert"]
    async with connect(city, b.token) as again:
        assert json.loads(await again.recv())["alerts"] == []


async def test_opt_out_and_deletion(city: LiveServer, stack: contextlib.AsyncExitStack) -> None:
    here = zone_point(ZONE)
    a = await enrol(city, stack, "Asha Quitting", offset(here, north_m=300))
    incident_id = await incident_at(city, here, "opt-out")
    await receive_until(a.ws, alert("alerted"))
    await a.ws.send(json.dumps({"type": "opt_out"}))
    down, _ = await receive_until(a.ws, alert("stood_down"))
    assert down["alert"]["reason"] == "opted_out"
    await a.ws.send(json.dumps({"type": "availability", "available": True}))
    refused, _ = await receive_until(a.ws, lambda m: m.get("type") == "error")
    assert refused["error"] == "InvalidTransition"

    phone = await city.db.fetchval("SELECT phone FROM volunteers WHERE id = $1", a.id)
    await a.ws.send(json.dumps({"type": "delete_data"}))
    message, code = await _refused(a.ws)
    assert (message["type"], code) == ("deleted", 4401)
    assert await city.db.fetchval("SELECT count(*) FROM volunteers WHERE id = $1", a.id) == 0
    assert (
        await city.db.fetchval(
            "SELECT volunteer_id FROM volunteer_alerts WHERE incident_id = $1", incident_id
        )
        is None
    ), "the alert stays, anonymous"
    for table in ("volunteers", "volunteer_alerts", "events"):
        dump = await city.db.fetchval(
            f"SELECT coalesce(string_agg(t::text, ''), '') FROM {table} t"
        )
        assert "Asha Quitting" not in dump, table
        assert phone not in dump, table
    async with connect(city, a.token) as ws:
        message, code = await _refused(ws)
        assert code == 4401

    # An operator deletes on a volunteer's request too.
    other_id, _ = await register(city, "B")
    gone = await city.http.delete(f"/v1/volunteers/{other_id}", headers=operator(city))
    assert gone.status_code == 200, gone.text
    read = await city.http.get(f"/v1/volunteers/{other_id}", headers=operator(city))
    assert read.status_code == 404


async def test_demo_volunteers_are_verified_and_keep_their_tokens(
    city: LiveServer, stack: contextlib.AsyncExitStack
) -> None:
    tokens = city.credentials["volunteers"]
    assert len(tokens) >= 3
    async with city.db.acquire() as conn:
        again = await load_demo(conn, base_url="http://127.0.0.1")
    assert again["volunteers"] == tokens, "the same tokens after a restart"
    volunteer_id, token = next(iter(tokens.items()))
    async with connect(city, token) as ws:
        snapshot = json.loads(await ws.recv())
        assert snapshot["volunteer"]["id"] == volunteer_id
        assert snapshot["volunteer"]["verified"] is True
        where = snapshot["volunteer"]["position"]
        assert where is not None, "placed in the demo city"
        await ws.send(json.dumps({"type": "availability", "available": True}))
        near = offset(GeoPoint(lat=where["lat"], lon=where["lon"]), north_m=150)
        await incident_at(city, near, "demo")
        await receive_until(ws, alert("alerted"))


@pytest.mark.parametrize("policy_overrides", [{"max_per_incident": 1}])
async def test_one_pass_serves_every_incident_a_volunteer_it_alerted_is_busy_for_the_next(
    city: LiveServer,
) -> None:
    """A pass reads every incident's volunteers at once; the one it alerts to the first
    incident is not offered to the second (whose claim would fail): the second gets
    the next nearest in the same pass."""
    here = zone_point(ZONE)
    first = await incident_at(city, here, "pass-1")
    second = await incident_at(city, offset(here, east_m=2500), "pass-2")
    near_both, _ = await register(city, "Near both")  # 1.8 km from the first, 0.7 from the second
    second_only, _ = await register(city, "Second only")  # 3.8 km and 1.3 km
    points = {near_both: offset(here, east_m=1800), second_only: offset(here, east_m=3800)}
    await city.db.execute(
        "UPDATE volunteers v SET available = true, lat = p.lat, lon = p.lon, position_at = now()"
        " FROM unnest($1::text[], $2::float8[], $3::float8[]) AS p(id, lat, lon)"
        " WHERE v.id = p.id",
        list(points),
        [p.lat for p in points.values()],
        [p.lon for p in points.values()],
    )
    city.services.volunteers.wake()

    async def both_alerted() -> list[Any]:
        rows = await city.db.fetch(
            "SELECT incident_id, volunteer_id, alerted_at FROM volunteer_alerts"
            " WHERE incident_id = ANY($1::bigint[]) ORDER BY incident_id",
            [first, second],
        )
        return rows if len(rows) == 2 else []

    rows = await wait_for(both_alerted, what="both incidents alerted")
    assert [(r["incident_id"], r["volunteer_id"]) for r in rows] == [
        (first, near_both),
        (second, second_only),
    ]
    # One transaction (now() is its start): the second did not wait for another pass.
    assert rows[0]["alerted_at"] == rows[1]["alerted_at"]


async def test_a_stream_of_wake_ups_runs_at_most_two_passes_a_second(city: LiveServer) -> None:
    """Every new incident wakes the rule; a burst of them must not run pass after pass
    (each looks at every open incident)."""
    alerter = city.services.volunteers
    loop = asyncio.get_running_loop()
    start, began = alerter.passes, loop.time()
    for _ in range(40):  # a wake-up every 25 ms for a second, as a burst of reports would
        alerter.wake()
        await asyncio.sleep(0.025)
    elapsed = loop.time() - began
    assert alerter.passes - start <= elapsed / 0.5 + 1

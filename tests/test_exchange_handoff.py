"""Hand-offs between two real CADs: this system at both ends, each the other's external
agency. An EIDO handed over becomes an incident there, once; status updates come back
and show on the incident; a receiver that is down gets it when it is back (across a
restart of the sender); wrong signatures are refused both ways."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn

from dispatch.app import create_app
from dispatch.db import create_pool, migrate
from dispatch.demo import load_demo
from dispatch.exchange import eido_schema
from dispatch.settings import Settings
from gateways.signing import sign
from tests.conftest import event_of, receive_until, wait_for
from tests.servers import free_port
from tests.test_walking_skeleton import panic, zone_point

SECRET_AB = "a-and-b-share-this-secret-0001"
SECRET_AC = "a-and-c-share-this-secret-0002"


@dataclass
class Cad:
    """One running instance acting as one agency's CAD."""

    agency_id: str
    settings: Settings
    port: int
    db: asyncpg.Pool
    credentials: dict[str, Any] = field(default_factory=dict)
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials['operators']['dispatcher']}"}

    async def start(self) -> None:
        config = uvicorn.Config(
            create_app(self.settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        await wait_for(self._started, within=20, what=f"{self.agency_id} starting")

    async def _started(self) -> bool:
        assert self.server is not None
        assert self.task is not None
        if self.task.done():
            self.task.result()
        return bool(self.server.started)

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await asyncio.wait_for(self.task, 30)
        self.server = self.task = None

    def console(self) -> Any:
        import websockets

        return websockets.connect(
            f"ws://127.0.0.1:{self.port}/v1/ws/console",
            additional_headers=self.auth(),
        )

    def mdt(self, unit_id: str) -> Any:
        import websockets

        return websockets.connect(
            f"ws://127.0.0.1:{self.port}/v1/ws/mdt",
            additional_headers={"Authorization": f"Bearer {self.credentials['units'][unit_id]}"},
        )


@pytest.fixture
async def cads(service_urls: tuple[str, str], tmp_path: Path) -> AsyncIterator[dict[str, Cad]]:
    """Three CADs on their own schemas: 112-a hands to cad-b and to cad-c (not started
    here: the receiver that is down); b and c know a. None is serving yet."""
    db_url, redis_url = service_urls
    ports = {name: free_port() for name in ("a", "b", "c")}
    ids = {"a": "112-a.test", "b": "cad-b.test", "c": "cad-c.test"}
    files = {
        "a": {
            ids["b"]: {"endpoint": f"http://127.0.0.1:{ports['b']}", "secrets": [SECRET_AB],
                       "type": "ems", "name": "108 ambulance"},
            ids["c"]: {"endpoint": f"http://127.0.0.1:{ports['c']}", "secrets": [SECRET_AC],
                       "type": "fire"},
        },
        "b": {ids["a"]: {"endpoint": f"http://127.0.0.1:{ports['a']}", "secrets": [SECRET_AB]}},
        "c": {ids["a"]: {"endpoint": f"http://127.0.0.1:{ports['a']}", "secrets": [SECRET_AC]}},
    }  # fmt: skip
    made: dict[str, Cad] = {}
    try:
        for name in ("a", "b", "c"):
            tag = uuid.uuid4().hex[:12]
            path = tmp_path / f"agencies-{name}.json"
            path.write_text(json.dumps(files[name]))
            settings = Settings(
                database_url=db_url,
                redis_url=redis_url,
                db_schema=f"t_{tag}",
                redis_prefix=f"t_{tag}:",
                relay_poll_s=0.2,
                agency_id=ids[name],
                agencies_file=path,
                handoff_retry_base_s=0.2,
                handoff_retry_cap_s=0.5,
                handoff_max_attempts=1000,
            )
            db = await create_pool(db_url, settings.db_schema, min_size=1, max_size=4)
            made[name] = Cad(ids[name], settings, ports[name], db)
            async with db.acquire() as conn:
                await migrate(conn, settings.db_schema)
                made[name].credentials = await load_demo(conn, base_url="http://127.0.0.1")
        yield made
    finally:
        for cad in made.values():
            await cad.stop()
            await cad.db.close()
            conn = await asyncpg.connect(db_url)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{cad.settings.db_schema}" CASCADE')
            finally:
                await conn.close()
            client = aioredis.from_url(redis_url)
            try:
                keys = [k async for k in client.scan_iter(match=f"{cad.settings.redis_prefix}*")]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()


async def _incident(cad: Cad, zone: str = "capital", trigger: str = "t-1") -> int:
    body = json.dumps(panic(zone_point(zone), trigger=trigger)).encode()
    ts = str(int(time.time()))
    async with httpx.AsyncClient(base_url=cad.url) as http:
        response = await http.post(
            "/v1/gateways/panic",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-ERSS-Gateway": "panic",
                "X-ERSS-Timestamp": ts,
                "X-ERSS-Signature": sign(cad.credentials["gateways"]["panic"], ts, body),
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
    assert response.status_code == 202, response.text
    incident_id: int = response.json()["incident_id"]
    return incident_id


async def _hand(cad: Cad, incident_id: int, agency: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=cad.url) as http:
        response = await http.post(
            f"/v1/incidents/{incident_id}/handoff",
            json={"agency": agency, "reason": "medical: no own ambulance free"},
            headers=cad.auth(),
        )
    assert response.status_code == 201, response.text
    handoff: dict[str, Any] = response.json()
    return handoff


async def _handoff(cad: Cad, incident_id: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=cad.url) as http:
        response = await http.get(f"/v1/incidents/{incident_id}/handoffs", headers=cad.auth())
    assert response.status_code == 200, response.text
    (handoff,) = response.json()
    found: dict[str, Any] = handoff
    return found


async def _status_events(cad: Cad, incident_id: int) -> list[str]:
    rows = await cad.db.fetch(
        "SELECT data->>'status' AS s FROM events WHERE incident_id = $1"
        " AND type = 'incident.handoff_status' ORDER BY id",
        incident_id,
    )
    return [r["s"] for r in rows]


async def test_round_trip_between_two_cads(cads: dict[str, Cad]) -> None:
    a, b = cads["a"], cads["b"]
    await a.start()
    await b.start()
    incident_id = await _incident(a)
    async with a.console() as console:
        await console.recv()
        handoff = await _hand(a, incident_id, b.agency_id)
        assert handoff["state"] == "pending"
        await receive_until(console, event_of("incident.handoff_requested"), within=10)
        await receive_until(console, event_of("incident.handoff_sent"), within=10)
        acknowledged, _ = await receive_until(
            console, event_of("incident.handoff_acknowledged"), within=10
        )
        assert acknowledged["event"]["incident_id"] == incident_id
        # B said at once that it took it.
        accepted, _ = await receive_until(console, event_of("incident.handoff_status"), within=10)
        assert accepted["event"]["data"]["status"] == "accepted"

    # What B received is a valid EIDO, and it is an incident there, with the location.
    (sent,) = await a.db.fetch("SELECT body FROM exchange_outbox WHERE handoff_id IS NOT NULL")
    assert eido_schema.problems(json.loads(bytes(sent["body"]))) == []
    there = await b.db.fetchrow(
        "SELECT r.incident_id, r.lat, r.lon, r.payload, r.gateway_id, i.status FROM reports r"
        " JOIN incidents i ON i.id = r.incident_id WHERE r.channel = 'eido'"
    )
    here = await a.db.fetchrow("SELECT lat, lon FROM incidents WHERE id = $1", incident_id)
    assert (there["lat"], there["lon"]) == pytest.approx((here["lat"], here["lon"]), abs=1e-6)
    assert there["payload"]["handed_over_by"] == a.agency_id
    assert there["gateway_id"] == f"agency:{a.agency_id}"

    # B's crew takes it, gets there, B closes it: A sees each step on its incident.
    unit = await wait_for(
        lambda: b.db.fetchrow(
            "SELECT id, unit_id FROM assignments WHERE incident_id = $1", there["incident_id"]
        ),
        what="an offer at B",
    )
    async with b.mdt(unit["unit_id"]) as mdt:
        await mdt.recv()
        await mdt.send(json.dumps({"type": "accept", "assignment_id": unit["id"]}))
        await receive_until(mdt, lambda m: m.get("type") == "ack")
        await mdt.send(json.dumps({"type": "status", "status": "en_route"}))
        await receive_until(mdt, lambda m: m.get("type") == "ack")
        await mdt.send(json.dumps({"type": "status", "status": "on_scene"}))
        await receive_until(mdt, lambda m: m.get("type") == "ack")
    async with httpx.AsyncClient(base_url=b.url) as http:
        closed = await http.post(
            f"/v1/incidents/{there['incident_id']}/close",
            json={"disposition": "patient taken to hospital"},
            headers=b.auth(),
        )
    assert closed.status_code == 200, closed.text

    async def all_back() -> bool:
        return await _status_events(a, incident_id) == [
            "accepted", "unit_assigned", "on_scene", "closed"
        ]  # fmt: skip

    await wait_for(all_back, within=15, what="every status update back at A")
    shown = await _handoff(a, incident_id)
    assert (shown["state"], shown["remote_status"]) == ("acknowledged", "closed")
    assert shown["remote_detail"]["disposition"] == "patient taken to hospital"
    unit_event = await a.db.fetchval(
        "SELECT data->>'unit' FROM events WHERE type = 'incident.handoff_status'"
        " AND data->>'status' = 'unit_assigned'"
    )
    assert unit_event == unit["unit_id"]
    # Once, however the status updates were retried.
    assert await b.db.fetchval("SELECT count(*) FROM reports WHERE channel = 'eido'") == 1
    undelivered = await b.db.fetchval(
        "SELECT count(*) FROM exchange_outbox WHERE state <> 'delivered'"
    )
    assert undelivered == 0


async def test_a_receiver_down_gets_it_once_when_back_even_across_a_restart(
    cads: dict[str, Cad],
) -> None:
    a, c = cads["a"], cads["c"]
    await a.start()
    incident_id = await _incident(a)
    await _hand(a, incident_id, c.agency_id)

    async def tried_twice() -> bool:
        attempts = await a.db.fetchval("SELECT attempts FROM exchange_outbox")
        return bool(attempts >= 2)

    await wait_for(tried_twice, within=15, what="two failed tries")
    shown = await _handoff(a, incident_id)
    assert shown["state"] == "pending"
    assert shown["last_error"] == "ConnectError"
    # The sender restarts while the receiver is still down: the outbox survives.
    await a.stop()
    await a.start()
    await c.start()

    async def acknowledged() -> bool:
        return (await _handoff(a, incident_id))["state"] == "acknowledged"

    await wait_for(acknowledged, within=20, what="the hand-off acknowledged")
    # A lost acknowledgement (the sender crashed after the POST): it is sent again, and
    # the receiver answers it without a second incident.
    await a.db.execute(
        "UPDATE exchange_outbox SET state = 'pending', next_attempt_at = now()"
        " WHERE handoff_id IS NOT NULL"
    )
    await wait_for(
        lambda: a.db.fetchval(
            "SELECT state = 'delivered' FROM exchange_outbox WHERE handoff_id IS NOT NULL"
        ),
        within=10,
        what="the repeat delivered",
    )
    assert await c.db.fetchval("SELECT count(*) FROM reports WHERE channel = 'eido'") == 1
    assert await c.db.fetchval("SELECT count(*) FROM incidents") == 1
    events = await a.db.fetch(
        "SELECT type FROM events WHERE incident_id = $1 AND type LIKE 'incident.handoff_%'"
        " AND type <> 'incident.handoff_status' ORDER BY id",
        incident_id,
    )
    assert [e["type"] for e in events] == [
        "incident.handoff_requested",
        "incident.handoff_sent",
        "incident.handoff_acknowledged",
    ]


def _signed(body: bytes, agency: str, secret: str, **override: str) -> dict[str, str]:
    ts = override.pop("timestamp", str(int(time.time())))
    return {
        "Content-Type": "application/json",
        "X-ERSS-Agency": agency,
        "X-ERSS-Timestamp": ts,
        "X-ERSS-Signature": sign(secret, ts, body),
        "Idempotency-Key": uuid.uuid4().hex,
        **override,
    }


async def test_wrong_signatures_are_refused_both_ways(cads: dict[str, Cad]) -> None:
    a, b = cads["a"], cads["b"]
    await a.start()
    await b.start()
    incident_id = await _incident(a)
    async with httpx.AsyncClient(base_url=a.url) as http:
        eido = await http.get(f"/v1/incidents/{incident_id}/eido", headers=a.auth())
    body = eido.content
    async with httpx.AsyncClient(base_url=b.url) as http:
        cases = {
            "wrong secret": _signed(body, a.agency_id, "not-the-shared-secret-at-all"),
            "unknown agency": _signed(body, "nobody.test", SECRET_AB),
            "stale": _signed(body, a.agency_id, SECRET_AB, timestamp=str(int(time.time()) - 999)),
            "unsigned": {"Content-Type": "application/json", "Idempotency-Key": "k"},
        }
        for name, headers in cases.items():
            response = await http.post("/v1/exchange/eido", content=body, headers=headers)
            assert response.status_code == 401, (name, response.text)
            assert SECRET_AB not in response.text
        ok = await http.post(
            "/v1/exchange/eido", content=body, headers=_signed(body, a.agency_id, SECRET_AB)
        )
        assert ok.status_code == 202, ok.text
    assert await b.db.fetchval("SELECT count(*) FROM reports") == 1

    # A status update forged to A changes nothing there.
    await _hand(a, incident_id, b.agency_id)
    urn = json.loads(body)["$id"]
    update = json.dumps({"incident": urn, "status": "closed"}).encode()
    async with httpx.AsyncClient(base_url=a.url) as http:
        forged = await http.post(
            "/v1/exchange/status",
            content=update,
            headers=_signed(update, b.agency_id, "forged-secret-forged-secret"),
        )
        assert forged.status_code == 401
    assert "closed" not in await _status_events(a, incident_id)

    # And A, configured with the wrong secret for B, is refused by B: the hand-off is
    # refused there, and the incident escalated to A's operators.
    await a.stop()
    wrong = json.loads(a.settings.agencies_file.read_text())  # type: ignore[union-attr]
    wrong[b.agency_id]["secrets"] = ["a-secret-b-does-not-know-0003"]
    a.settings.agencies_file.write_text(json.dumps(wrong))  # type: ignore[union-attr]
    await a.start()
    second = await _incident(a, zone="sahidnagar", trigger="t-2")
    await _hand(a, second, b.agency_id)

    async def refused() -> bool:
        state = await a.db.fetchval("SELECT state FROM handoffs WHERE incident_id = $1", second)
        return state == "refused"

    await wait_for(refused, within=10, what="the hand-off refused")
    escalated = await a.db.fetchrow(
        "SELECT escalated, escalation_reason FROM incidents WHERE id = $1", second
    )
    assert escalated["escalated"]
    assert b.agency_id in escalated["escalation_reason"]
    assert "a-secret-b-does-not-know" not in escalated["escalation_reason"]
    assert await b.db.fetchval("SELECT count(*) FROM reports") == 1


async def test_a_receiver_never_back_is_escalated_after_n_tries(cads: dict[str, Cad]) -> None:
    a, c = cads["a"], cads["c"]
    a.settings = a.settings.model_copy(update={"handoff_max_attempts": 3})
    await a.start()
    incident_id = await _incident(a)
    async with a.console() as console:
        await console.recv()
        await _hand(a, incident_id, c.agency_id)
        given_up, _ = await receive_until(
            console, event_of("incident.handoff_escalated"), within=15
        )
    assert given_up["event"]["data"]["attempts"] == 3
    assert given_up["event"]["data"]["error"] == "ConnectError"
    shown = await _handoff(a, incident_id)
    assert (shown["state"], shown["attempts"]) == ("escalated", 3)
    reason = await a.db.fetchval(
        "SELECT escalation_reason FROM incidents WHERE id = $1", incident_id
    )
    assert "3 tries" in reason
    # Handed over again later, it is a new hand-off.
    again = await _hand(a, incident_id, c.agency_id)
    assert again["id"] != shown["id"]


def _socket(cad: Cad, agency: str, secret: str) -> Any:
    import websockets

    ts = str(int(time.time()))
    return websockets.connect(
        f"ws://127.0.0.1:{cad.port}/v1/exchange/ws",
        additional_headers={
            "X-ERSS-Agency": agency,
            "X-ERSS-Timestamp": ts,
            "X-ERSS-Signature": sign(secret, ts, b"GET /v1/exchange/ws"),
        },
    )


async def _frame(ws: Any, kind: str, within: float = 10) -> dict[str, Any]:
    message, _ = await receive_until(ws, lambda m: m.get("type") == kind, within=within)
    return message


async def test_an_agency_subscribes_to_the_eidos_handed_to_it_and_resumes(
    cads: dict[str, Cad],
) -> None:
    a, b = cads["a"], cads["b"]
    await a.start()
    handed = await _incident(a)
    not_handed = await _incident(a, zone="sahidnagar", trigger="t-2")
    quiet = await _incident(a, zone="badagada", trigger="t-3")
    await b.start()
    await _hand(a, handed, b.agency_id)
    await _hand(a, quiet, b.agency_id)

    async def settled() -> bool:
        # B took both and said so: nothing more happens on them unless we act.
        remote = [(await _handoff(a, i))["remote_status"] for i in (handed, quiet)]
        return remote == ["accepted", "accepted"]

    await wait_for(settled, within=15, what="both hand-offs accepted")

    async def note(incident_id: int, text: str) -> None:
        async with httpx.AsyncClient(base_url=a.url) as http:
            answer = await http.post(
                f"/v1/incidents/{incident_id}/notes", json={"text": text}, headers=a.auth()
            )
        assert answer.status_code == 201

    def notes(message: dict[str, Any]) -> list[str]:
        (eido,) = message["notification"]
        return [n["notesActionComments"] for n in eido.get("notesComponent", [])]

    async with _socket(a, b.agency_id, SECRET_AB) as ws:
        await ws.send(json.dumps({"type": "subscribe", "requestId": "r1"}))
        answer = await _frame(ws, "subscribeResponse")
        assert answer["statusCode"] == 200
        first = await _frame(ws, "notify")
        (eido,) = first["notification"]
        assert eido_schema.problems(eido) == []
        assert eido["$id"].startswith(f"urn:emergency:uid:incidentid:{handed}:")
        (other,) = (await _frame(ws, "notify"))["notification"]
        assert other["$id"].startswith(f"urn:emergency:uid:incidentid:{quiet}:")
        await note(not_handed, "not theirs")
        await note(handed, "patient conscious")
        live = await _frame(ws, "notify")
        assert notes(live) == ["patient conscious"]
        assert live["notification"][0]["$id"] == eido["$id"]
        position = live["position"]
    # Away for a while: what changed meanwhile comes on resume, and only that.
    await note(handed, "second ambulance asked for")
    await note(not_handed, "still not theirs")
    async with _socket(a, b.agency_id, SECRET_AB) as ws:
        await ws.send(json.dumps({"type": "subscribe", "requestId": "r2", "after": position}))
        assert (await _frame(ws, "subscribeResponse"))["position"] == position
        resumed = await _frame(ws, "notify")
        assert notes(resumed) == ["patient conscious", "second ambulance asked for"]
        assert resumed["position"] > position
        # The quiet incident did not change: not sent again; the next is live.
        await note(handed, "on the way to hospital")
        after_resume = await _frame(ws, "notify")
        assert notes(after_resume)[-1] == "on the way to hospital"
        await ws.send(json.dumps({"type": "subscribe", "requestId": "r3"}))
        assert (await _frame(ws, "subscribeResponse"))["statusCode"] == 409
    # Another agency, or a wrong secret, gets nothing.
    import websockets

    async with _socket(a, b.agency_id, "not-the-shared-secret-at-all") as ws:
        error = json.loads(await ws.recv())
        assert error["error"] == "Unauthorized"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401
    async with _socket(a, cads["c"].agency_id, SECRET_AC) as ws:
        await ws.send(json.dumps({"type": "subscribe", "requestId": "r4"}))
        assert (await _frame(ws, "subscribeResponse"))["statusCode"] == 200
        await note(handed, "c must not see this")
        await note(handed, "nor this")
        with pytest.raises(TimeoutError):
            await _frame(ws, "notify", within=2)

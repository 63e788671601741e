"""Two server processes on one PostgreSQL and Redis: no double claims, no lost events."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from dispatch.db import create_pool, migrate
from dispatch.demo import demo_zones, load_demo, point_inside
from dispatch.settings import Settings
from gateways.signing import sign

ZONES_BY_ID = {zone.id: zone for zone in demo_zones()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Instance:
    """One `erss serve` process."""

    def __init__(self, settings: Settings, log: Path, **env_extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ERSS_")}
        env.update(
            ERSS_DATABASE_URL=str(settings.database_url),
            ERSS_REDIS_URL=str(settings.redis_url),
            ERSS_DB_SCHEMA=settings.db_schema,
            ERSS_REDIS_PREFIX=settings.redis_prefix,
            ERSS_RELAY_POLL_S="0.2",
            **env_extra,
        )
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dispatch.cli", "serve", "--port", str(self.port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        self.log = log

    async def wait_ready(self) -> None:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"instance exited:\n{self.log.read_text()[-3000:]}")
                try:
                    if (await client.get(self.url + "/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        pytest.fail(f"instance did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
async def city(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, dict[str, Any]]]:
    assert settings.database_url
    pool = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn, settings.db_schema)
        credentials = await load_demo(conn, base_url="")
    try:
        yield pool, credentials
    finally:
        await pool.close()


@pytest.fixture
async def instances(
    settings: Settings, tmp_path: Path, city: Any, request: pytest.FixtureRequest
) -> AsyncIterator[list[Instance]]:
    env: dict[str, str] = getattr(request, "param", {})
    pair = [Instance(settings, tmp_path / f"instance-{n}.log", **env) for n in range(2)]
    try:
        await asyncio.gather(*(i.wait_ready() for i in pair))
        yield pair
    finally:
        for instance in pair:
            instance.stop()


def _signed(secret: str, payload: dict[str, Any], key: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    ts = str(int(time.time()))
    return body, {
        "Content-Type": "application/json",
        "X-ERSS-Gateway": "panic",
        "X-ERSS-Timestamp": ts,
        "X-ERSS-Signature": sign(secret, ts, body),
        "Idempotency-Key": key,
    }


async def test_200_concurrent_panics_across_two_instances(
    instances: list[Instance], city: tuple[asyncpg.Pool, dict[str, Any]]
) -> None:
    """No unit ever holds two active assignments; every incident is offered or queued;
    every event is positioned exactly once, with no gap; a console on one instance sees
    what the other did."""
    db, credentials = city
    secret = credentials["gateways"]["panic"]
    operator = credentials["operators"]["dispatcher"]
    zones = demo_zones()

    rng = random.Random(7)
    payloads = []
    for n in range(200):
        point = point_inside(rng.choice(zones), rng)
        payloads.append(
            {
                "trigger_id": f"p-{n}",
                "device_id": f"d-{n}",
                "location": {"lat": point.lat, "lon": point.lon, "accuracy_m": 10.0},
            }
        )
    limit = asyncio.Semaphore(40)

    async with (
        httpx.AsyncClient(timeout=30) as client,
        websockets.connect(
            instances[0].url.replace("http", "ws") + "/v1/ws/console",
            additional_headers={"Authorization": f"Bearer {operator}"},
        ) as console,
    ):
        snapshot = json.loads(await console.recv())
        assert snapshot["type"] == "snapshot"

        async def fire(n: int) -> httpx.Response:
            body, headers = _signed(secret, payloads[n], f"k-{n}")
            async with limit:
                return await client.post(
                    instances[n % 2].url + "/v1/gateways/panic", content=body, headers=headers
                )

        responses = await asyncio.gather(*(fire(n) for n in range(200)))
        assert [r.status_code for r in responses] == [202] * 200, (
            [r.text for r in responses if r.status_code != 202][:3],
            # What the instances logged beside their access lines: an outage's cause.
            [
                [line for line in i.log.read_text().splitlines() if "uvicorn.access" not in line][
                    -30:
                ]
                for i in instances
            ],
        )
        statuses = [r.json()["status"] for r in responses]
        assert set(statuses) <= {"offered", "queued"}
        assert statuses.count("offered") == 34  # every police unit, once

        # Events from both instances reach the console on instance 0, in position order.
        from_b = {r.json()["incident_id"] for n, r in enumerate(responses) if n % 2 == 1}
        seen_b: set[int] = set()
        positions: list[int] = []
        async with asyncio.timeout(20):
            while not from_b <= seen_b:
                message = json.loads(await console.recv())
                if message["type"] == "event":
                    positions.append(int(message["position"]))
                    if message["event"]["type"] == "incident.created":
                        seen_b.add(message["event"]["incident_id"])
        assert positions == sorted(positions)
        assert len(positions) == len(set(positions))

    double = await db.fetchval(
        "SELECT count(*) FROM (SELECT unit_id FROM assignments WHERE status IN"
        " ('offered', 'accepted') GROUP BY unit_id HAVING count(*) > 1) d"
    )
    assert double == 0
    busy = await db.fetchval("SELECT count(*) FROM units WHERE status = 'offered'")
    assert busy == await db.fetchval("SELECT count(*) FROM assignments")
    assert await db.fetchval("SELECT count(*) FROM incidents") == 200
    stray = await db.fetchval(
        "SELECT count(*) FROM incidents WHERE status NOT IN ('offered', 'queued')"
    )
    assert stray == 0
    for incident_id, types in await db.fetch(
        "SELECT incident_id, array_agg(type ORDER BY id) FROM events"
        " WHERE incident_id IS NOT NULL GROUP BY incident_id"
    ):
        assert types[0] == "incident.created", (incident_id, types)
        assert ("assignment.offered" in types) != ("incident.queued" in types), types

    for _ in range(100):  # the relay may still be publishing the last batch
        if not await db.fetchval("SELECT count(*) FROM events WHERE NOT published"):
            break
        await asyncio.sleep(0.1)
    count, low, high = await db.fetchrow(
        "SELECT count(*), min(position), max(position) FROM events"
    )
    assert (low, high) == (1, count)


@pytest.mark.parametrize(
    "instances", [{"ERSS_OFFER_TIMEOUT_S": "1", "ERSS_EXPIRY_POLL_S": "0.2"}], indirect=True
)
async def test_offers_of_a_killed_instance_expire_on_the_survivor(
    instances: list[Instance], city: tuple[asyncpg.Pool, dict[str, Any]]
) -> None:
    """Invariant 5: expiry lives in PostgreSQL, so SIGKILL of the offering instance
    delays nothing beyond the offer's deadline."""
    db, credentials = city
    rng = random.Random(3)
    zone = next(z for z in demo_zones() if z.id == "infocity")
    point = point_inside(zone, rng)
    payload = {
        "trigger_id": "k-1",
        "device_id": "d-1",
        "location": {"lat": point.lat, "lon": point.lon, "accuracy_m": 8.0},
    }
    body, headers = _signed(credentials["gateways"]["panic"], payload, "k-1")
    async with httpx.AsyncClient() as client:
        response = await client.post(
            instances[0].url + "/v1/gateways/panic", content=body, headers=headers
        )
    assert response.status_code == 202
    incident_id = response.json()["incident_id"]
    first = await db.fetchval("SELECT unit_id FROM assignments")
    instances[0].proc.send_signal(signal.SIGKILL)
    instances[0].proc.wait()

    for _ in range(100):
        rows = await db.fetch(
            "SELECT unit_id, status FROM assignments WHERE incident_id = $1 ORDER BY id",
            incident_id,
        )
        if len(rows) >= 2:
            break
        await asyncio.sleep(0.1)
    assert (rows[0]["unit_id"], rows[0]["status"]) == (first, "expired")
    assert rows[1]["unit_id"] != first
    assert rows[1]["status"] == "offered"
    assert await db.fetchval("SELECT status FROM units WHERE id = $1", first) == "available"


async def test_offers_and_answers_cross_instances_both_ways(
    instances: list[Instance], city: tuple[asyncpg.Pool, dict[str, Any]]
) -> None:
    """An MDT on one instance gets the offer the other made, and its accept (handled
    where it is connected) reaches a console on the other."""
    db, credentials = city
    rng = random.Random(11)
    for made_on, mdt_on in ((0, 1), (1, 0)):
        zone = ZONES_BY_ID["capital" if made_on == 0 else "infocity"]
        point = point_inside(zone, rng)
        unit = await db.fetchval(
            "SELECT id FROM units WHERE zone_id = $1 AND agency = 'police' AND status ="
            " 'available' ORDER BY (lat - $2)^2 + (lon - $3)^2 LIMIT 1",
            zone.id,
            point.lat,
            point.lon,
        )
        token = credentials["units"][unit]
        operator = credentials["operators"]["dispatcher"]
        async with (
            websockets.connect(
                instances[mdt_on].url.replace("http", "ws") + "/v1/ws/mdt",
                additional_headers={"Authorization": f"Bearer {token}"},
            ) as mdt,
            websockets.connect(
                instances[made_on].url.replace("http", "ws") + "/v1/ws/console",
                additional_headers={"Authorization": f"Bearer {operator}"},
            ) as console,
            httpx.AsyncClient() as client,
        ):
            await mdt.recv()
            await console.recv()
            payload = {
                "trigger_id": f"x-{made_on}",
                "device_id": f"x-{made_on}",
                "location": {"lat": point.lat, "lon": point.lon, "accuracy_m": 5.0},
            }
            body, headers = _signed(credentials["gateways"]["panic"], payload, f"x-{made_on}")
            response = await client.post(
                instances[made_on].url + "/v1/gateways/panic", content=body, headers=headers
            )
            assert response.status_code == 202
            async with asyncio.timeout(10):
                while True:
                    offer = json.loads(await mdt.recv())
                    if offer.get("event", {}).get("type") == "assignment.offered":
                        break
            assert offer["event"]["unit_id"] == unit
            assignment_id = offer["event"]["data"]["assignment_id"]
            await mdt.send(json.dumps({"type": "accept", "assignment_id": assignment_id}))
            async with asyncio.timeout(10):
                while True:
                    seen = json.loads(await console.recv())
                    if seen.get("event", {}).get("type") == "assignment.accepted":
                        break
            assert seen["event"]["data"]["assignment_id"] == assignment_id

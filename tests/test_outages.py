"""Outages: PostgreSQL or Redis goes away under a stream of reports and comes back.

Real, private servers (tests/servers.py) that the test stops and starts; a real app
instance in this event loop on top of them; signed panic reports from several senders
the whole time. What must hold (issue 12): no 500 and no dropped connection, every
refusal is a JSON 503 with Retry-After, every 2xx is in PostgreSQL afterwards, a 503'd
report retried with its Idempotency-Key is accepted once the store is back, and /readyz
says ready soon after the restart and keeps saying it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from dispatch.app import create_app
from dispatch.db import create_pool, migrate
from dispatch.demo import demo_zones, load_demo, point_inside
from dispatch.settings import Settings
from gateways.signing import sign
from tests.conftest import start_server, stop_server
from tests.servers import PrivatePostgres, PrivateRedis, ServerUnavailable

# Consecutive bursts of concurrent /readyz that must all say ready once it is ready again.
_STEADY_CHECKS = 15
_BURST = 8
# Background loops that must log an outage once, not once per tick.
_LOOPS = (
    "dispatch.unit_index",
    "dispatch.positions",
    "dispatch.outbox",
    "dispatch.queue",
    "dispatch.expiry",
    "dispatch.hub",
    "dispatch.zonestore",
)


@pytest.fixture(scope="module")
def stores() -> Iterator[tuple[PrivatePostgres, PrivateRedis]]:
    """A private PostgreSQL and Redis that these tests may stop and start."""
    try:
        pg, redis = PrivatePostgres(), PrivateRedis()
    except ServerUnavailable as err:
        pytest.skip(str(err))
    try:
        pg.start()
        redis.start()
        yield pg, redis
    finally:
        pg.destroy()
        redis.destroy()


@dataclass
class Answer:
    """One delivery and what came back (status None: the connection failed)."""

    key: str
    body: bytes
    at: float
    status: int | None = None
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""


@dataclass
class Instance:
    """The app under test and what a test needs to talk to it."""

    base_url: str
    settings: Settings
    credentials: dict[str, Any]

    def signed(self, body: bytes, key: str) -> dict[str, str]:
        """Headers of a signed panic delivery."""
        ts = str(int(time.time()))
        return {
            "Content-Type": "application/json",
            "X-ERSS-Gateway": "panic",
            "X-ERSS-Timestamp": ts,
            "X-ERSS-Signature": sign(self.credentials["gateways"]["panic"], ts, body),
            "Idempotency-Key": key,
        }

    async def post(self, client: httpx.AsyncClient, body: bytes, key: str) -> Answer:
        """Deliver one report; a failed connection is recorded, not raised."""
        answer = Answer(key, body, time.monotonic())
        try:
            response = await client.post(
                "/v1/gateways/panic", content=body, headers=self.signed(body, key)
            )
        except httpx.HTTPError as err:
            answer.error = f"{type(err).__name__}: {err}"
            return answer
        answer.status = response.status_code
        answer.headers = dict(response.headers)
        try:
            answer.payload = response.json()
        except ValueError:
            answer.payload = response.text
        return answer


async def prepare(pg: PrivatePostgres, redis: PrivateRedis) -> tuple[Settings, dict[str, Any]]:
    """Settings for a fresh schema and key prefix on the private stores, with the demo
    city loaded; returns them and the demo credentials."""
    tag = uuid.uuid4().hex[:12]
    settings = Settings(
        database_url=pg.url,
        redis_url=redis.url,
        db_schema=f"t_{tag}",
        redis_prefix=f"t_{tag}:",
        relay_poll_s=0.2,
        queue_poll_s=0.5,
        expiry_poll_s=0.5,
    )
    pool = await create_pool(pg.url, settings.db_schema, min_size=1, max_size=1)
    async with pool.acquire() as conn:
        await migrate(conn, settings.db_schema)
        credentials = await load_demo(conn, base_url="")
    await pool.close()
    return settings, credentials


@pytest.fixture
async def instance(stores: tuple[PrivatePostgres, PrivateRedis]) -> AsyncIterator[Instance]:
    """The demo city served on the private stores, in a fresh schema and key prefix."""
    pg, redis = stores
    settings, credentials = await prepare(pg, redis)
    server, task, port = await start_server(settings)
    try:
        yield Instance(f"http://127.0.0.1:{port}", settings, credentials)
    finally:
        # Whatever a test left stopped comes back, so the app can shut down cleanly.
        await asyncio.to_thread(_ensure_running, pg, redis)
        await stop_server(server, task)


def _ensure_running(pg: PrivatePostgres, redis: PrivateRedis) -> None:
    if not pg.running:
        pg.start()
    if not redis.running:
        redis.start()


class ReportStream:
    """Senders posting distinct signed panic reports, each on its own keep-alive
    connection, until stopped; every answer is kept."""

    def __init__(self, instance: Instance, *, senders: int = 3) -> None:
        self.instance = instance
        self.answers: list[Answer] = []
        self._senders = senders
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random(12)
        self._zones = demo_zones()

    def body(self) -> bytes:
        """A fresh report from its own device at a random point of the city."""
        point = point_inside(self._rng.choice(self._zones), self._rng)
        trigger = uuid.uuid4().hex[:16]
        return json.dumps(
            {
                "trigger_id": trigger,
                "device_id": f"dev-{trigger}",
                "location": {"lat": point.lat, "lon": point.lon, "accuracy_m": 15.0},
            }
        ).encode()

    async def __aenter__(self) -> ReportStream:
        self._tasks = [asyncio.create_task(self._send()) for _ in range(self._senders)]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _send(self) -> None:
        async with httpx.AsyncClient(base_url=self.instance.base_url, timeout=15) as client:
            while not self._stop.is_set():
                answer = await self.instance.post(client, self.body(), uuid.uuid4().hex)
                self.answers.append(answer)
                await asyncio.sleep(0.02)

    def since(self, moment: float) -> list[Answer]:
        """Answers to deliveries sent at or after ``moment`` (time.monotonic())."""
        return [a for a in self.answers if a.at >= moment]


async def until(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float, what: str
) -> None:
    """Wait for ``condition`` with a deadline; fail saying what did not happen."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"within {within} s: {what}")


def ok(answers: list[Answer]) -> list[Answer]:
    """The accepted ones."""
    return [a for a in answers if a.status is not None and 200 <= a.status < 300]


def refused(answers: list[Answer]) -> list[Answer]:
    """Everything not accepted, connection failures included."""
    return [a for a in answers if a.status is None or not 200 <= a.status < 300]


def assert_outage_answers(answers: list[Answer]) -> None:
    """No 500, no dropped connection: every refusal is the JSON 503 a gateway retries."""
    for answer in refused(answers):
        assert answer.status == 503, (answer.status, answer.error, answer.payload)
        assert isinstance(answer.payload, dict), answer.payload
        assert answer.payload.get("error") == "Unavailable", answer.payload
        assert answer.payload.get("detail"), answer.payload
        assert int(answer.headers["retry-after"]) > 0


async def assert_nothing_lost(instance: Instance, accepted: list[Answer]) -> None:
    """Every accepted delivery is committed, once, with the incident it was answered
    with (``accepted``: the 2xx answers, a retried delivery's last one)."""
    assert instance.settings.database_url
    conn = await asyncpg.connect(instance.settings.database_url)
    try:
        await conn.execute(f'SET search_path TO "{instance.settings.db_schema}"')
        rows = await conn.fetch(
            "SELECT id, incident_id FROM reports WHERE id = ANY($1::bigint[])",
            [a.payload["report_id"] for a in accepted],
        )
        stored = {r["id"]: r["incident_id"] for r in rows}
        for answer in accepted:
            report = answer.payload["report_id"]
            assert stored.get(report) == answer.payload["incident_id"], answer.payload
        keys = [a.key for a in accepted]
        assert len(set(keys)) == len(keys)
        reports = await conn.fetchval(
            "SELECT count(*) FROM reports r JOIN idempotency_keys k"
            " ON (k.response->>'report_id')::bigint = r.id WHERE k.key = ANY($1::text[])",
            keys,
        )
        assert reports == len(keys), "a delivery was stored twice or not at all"
    finally:
        await conn.close()


async def retry_refused(instance: Instance, answers: list[Answer]) -> list[Answer]:
    """Deliver every refused report again, same key and body, as a gateway would."""
    async with httpx.AsyncClient(base_url=instance.base_url, timeout=15) as client:
        retried = [await instance.post(client, a.body, a.key) for a in refused(answers)]
    for answer in retried:
        assert answer.status == 202, (answer.status, answer.payload, answer.error)
    # And once more: the first retry's answer again, no second report.
    async with httpx.AsyncClient(base_url=instance.base_url, timeout=15) as client:
        again = [await instance.post(client, a.body, a.key) for a in retried]
    assert [a.payload for a in again] == [a.payload for a in retried]
    return retried


async def readyz_burst(instance: Instance) -> list[httpx.Response]:
    """Concurrent /readyz checks: each takes its own pooled connection, so a dead one
    left in the pool fails one of them."""
    async with httpx.AsyncClient(base_url=instance.base_url, timeout=10) as client:
        return list(await asyncio.gather(*(client.get("/readyz") for _ in range(_BURST))))


def assert_ready(burst: list[httpx.Response], when: str) -> None:
    """Every check of the burst said ready."""
    bad = [r.json() for r in burst if r.status_code != 200]
    assert not bad, f"/readyz not ready {when}: {bad}"


async def assert_steady(instance: Instance) -> None:
    """Many bursts in a row all say ready: no flapping."""
    for check in range(_STEADY_CHECKS):
        assert_ready(await readyz_burst(instance), f"at steady check {check + 1}")


async def ride_out(
    instance: Instance,
    stream: ReportStream,
    stop: Callable[[], None],
    start: Callable[[], None],
    *,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[Answer], list[httpx.Response]]:
    """Take a store down under the stream (doing ``meanwhile`` while it is down), bring
    it back; returns the answers to what was sent during the outage, and the /readyz
    burst sent as soon as the store answered again."""
    await until(lambda: len(ok(stream.answers)) >= 5, within=20, what="5 reports accepted")
    down_at = time.monotonic()
    await asyncio.to_thread(stop)
    await until(
        lambda: len(stream.since(down_at)) >= 10, within=20, what="10 answers during the outage"
    )
    if meanwhile is not None:
        await meanwhile()
    await asyncio.to_thread(start)
    up_at = time.monotonic()
    first = await readyz_burst(instance)
    await until(
        lambda: len(ok(stream.since(up_at))) >= 5, within=30, what="5 accepted after the restart"
    )
    return [a for a in stream.since(down_at) if a.at < up_at], first


def assert_logged_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    """The background loops said the store was down once each, with no traceback."""
    for name in _LOOPS:
        records = [r for r in caplog.records if r.name == name]
        assert not [r for r in records if r.levelno >= logging.ERROR], name
        down = [r.getMessage() for r in records if "unreachable" in r.getMessage()]
        # Once per task: a logger may run several loops (the hub's stream and positions).
        tasks = [message.split(":")[0] for message in down]
        assert len(tasks) == len(set(tasks)), down


async def test_postgresql_restart_loses_nothing_and_refuses_with_503(
    stores: tuple[PrivatePostgres, PrivateRedis],
    instance: Instance,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    pg, _redis = stores
    operator = {"Authorization": f"Bearer {instance.credentials['operators']['dispatcher']}"}
    probes: list[httpx.Response] = []

    async def probe() -> None:
        # A route whose dependency (the operator's token) needs the database, and readyz.
        async with httpx.AsyncClient(base_url=instance.base_url, timeout=10) as client:
            probes.append(await client.get("/v1/incidents", headers=operator))
            probes.append(await client.get("/readyz"))

    async with ReportStream(instance) as stream:
        during, first = await ride_out(
            instance, stream, lambda: pg.stop("fast"), pg.start, meanwhile=probe
        )
    assert refused(during), "the outage refused nothing: was PostgreSQL really down?"
    assert_outage_answers(stream.answers)
    incidents, ready = probes
    assert incidents.status_code == 503, incidents.text
    assert incidents.json()["error"] == "Unavailable"
    assert int(incidents.headers["retry-after"]) > 0
    assert ready.status_code == 503
    assert "unreachable" in ready.json()["checks"]["postgres"]
    assert_ready(first, "at the first check after the restart")
    await assert_steady(instance)
    retried = await retry_refused(instance, stream.answers)
    await assert_nothing_lost(instance, ok(stream.answers) + retried)
    assert_logged_once_per_outage(caplog)


async def test_redis_restart_refuses_no_emergency_and_readyz_recovers(
    stores: tuple[PrivatePostgres, PrivateRedis],
    instance: Instance,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    _pg, redis = stores
    # Several pooled Redis connections before the restart: each one is dead after it.
    assert_ready(await readyz_burst(instance), "before the restart")

    async with ReportStream(instance) as stream:
        during, first = await ride_out(
            instance, stream, lambda: redis.stop(signal.SIGTERM), redis.start
        )
    # The rate limiter fails open and candidates come from PostgreSQL: emergencies are
    # still taken while Redis is down.
    assert ok(during), [(a.status, a.payload) for a in during[:5]]
    assert_outage_answers(stream.answers)
    assert_ready(first, "at the first check after the restart")
    await assert_steady(instance)
    retried = await retry_refused(instance, stream.answers)
    await assert_nothing_lost(instance, ok(stream.answers) + retried)
    assert_logged_once_per_outage(caplog)


async def test_readyz_one_slow_answer_does_not_flip_it_two_do(instance: Instance) -> None:
    assert instance.settings.database_url
    # A real slow answer: another session holds the table the probe reads.
    blocker = await asyncpg.connect(instance.settings.database_url)
    try:
        await blocker.execute(f'SET search_path TO "{instance.settings.db_schema}"')
        async with httpx.AsyncClient(base_url=instance.base_url, timeout=10) as client:
            assert (await client.get("/readyz")).status_code == 200
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE")
                slow = await client.get("/readyz")
                assert slow.status_code == 200, slow.json()
                assert "postgres" in slow.json()["warnings"]
                again = await client.get("/readyz")
                assert again.status_code == 503, again.json()
                assert "no answer" in again.json()["checks"]["postgres"]
            back = await client.get("/readyz")
            assert back.status_code == 200, back.json()
            assert "warnings" not in back.json()
    finally:
        await blocker.close()


async def test_an_instance_started_during_an_outage_comes_up_when_the_store_is_back(
    stores: tuple[PrivatePostgres, PrivateRedis], caplog: pytest.LogCaptureFixture
) -> None:
    pg, redis = stores
    caplog.set_level(logging.WARNING)
    settings, _credentials = await prepare(pg, redis)
    await asyncio.to_thread(pg.stop, "fast")
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        await until(
            lambda: any(
                "start-up: a store is unreachable" in r.getMessage() for r in caplog.records
            ),
            within=15,
            what="the starting instance says it waits for PostgreSQL",
        )
        assert not task.done(), "the instance gave up while PostgreSQL was down"
        await asyncio.to_thread(pg.start)
        await until(lambda: server.started or task.done(), within=30, what="the instance started")
        assert server.started, "the instance exited instead of starting"
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert (await client.get("/readyz")).status_code == 200
    finally:
        await asyncio.to_thread(_ensure_running, pg, redis)
        server.should_exit = True
        await asyncio.wait_for(task, 15)

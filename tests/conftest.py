"""Test fixtures: real PostgreSQL, real Redis, a live uvicorn serving the real app.

Services come from ERSS_TEST_DATABASE_URL / ERSS_TEST_REDIS_URL when set (CI sets them to
the machine's servers), else from the embedded servers the project itself starts. Every
test gets its own PostgreSQL schema and Redis key prefix, so tests never see each
other's rows or keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
import websockets

from dispatch.app import create_app
from dispatch.db import create_pool, migrate
from dispatch.demo import load_demo
from dispatch.embedded import start_embedded
from dispatch.services import Services
from dispatch.serving import websocket_options
from dispatch.settings import Settings
from gateways.signing import sign

# The shared reference data (real AML, PIDF-LO samples) lives beside the repository, as
# in CI; ERSS_SHARED_DATA points elsewhere. The suite's own samples are in tests/fixtures;
# the shared ones, when present, are replayed as an extra corpus.
SHARED_DATA = Path(
    os.environ.get("ERSS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A skip whose reason starts with this is for something missing from the machine (the
# extra corpus, Chromium, a TCP database). Locally it is a skip the README lists; in CI
# (CI=true), where .ci/run installs or checks all of them, it is a failure.
MISSING = "missing dependency: "
IN_CI = os.environ.get("CI") == "true"


def needs_shared(folder: str) -> pytest.MarkDecorator:
    """Skip a test whose samples are in ``SHARED_DATA/folder`` when it is absent."""
    return pytest.mark.skipif(
        not (SHARED_DATA / folder).is_dir(),
        reason=f"{MISSING}extra corpus not found at {SHARED_DATA / folder} (ERSS_SHARED_DATA)",
    )


def require(condition: bool, what: str) -> None:
    """Skip (fail, in CI) the calling test or fixture unless ``condition`` holds."""
    if not condition:
        pytest.skip(MISSING + what)


def corpus(samples: list[Any], folder: str, ids: Any = None) -> list[Any]:
    """Parameters for a replay of the extra corpus: its samples, or one placeholder
    that skips (fails in CI) when the corpus is absent, never an empty set."""
    if samples:
        return [pytest.param(s, id=ids(s) if ids else None) for s in samples]
    return [pytest.param(None, id="absent", marks=needs_shared(folder))]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a skip for a missing dependency is a failure: CI must run everything."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and MISSING in str(report.longrepr):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI=true and this would skip: {reason}"


@pytest.fixture(scope="session")
def service_urls() -> Iterator[tuple[str, str]]:
    """(database_url, redis_url) for the whole session."""
    db_url = os.environ.get("ERSS_TEST_DATABASE_URL", "")
    redis_url = os.environ.get("ERSS_TEST_REDIS_URL", "")
    if db_url and redis_url:
        yield db_url, redis_url
        return
    # A short folder: Unix socket paths are limited to about 107 bytes.
    data_dir = Path(tempfile.mkdtemp(prefix="erss-test-"))
    embedded = start_embedded(data_dir, database=not db_url, redis=not redis_url)
    try:
        yield db_url or embedded.database_url, redis_url or embedded.redis_url
    finally:
        embedded.stop()


@pytest.fixture
async def settings(service_urls: tuple[str, str]) -> AsyncIterator[Settings]:
    """Settings with a private schema and key prefix; both removed afterwards."""
    db_url, redis_url = service_urls
    tag = uuid.uuid4().hex[:12]
    test_settings = Settings(
        database_url=db_url,
        redis_url=redis_url,
        db_schema=f"t_{tag}",
        redis_prefix=f"t_{tag}:",
        relay_poll_s=0.2,
    )
    yield test_settings
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{test_settings.db_schema}" CASCADE')
    finally:
        await conn.close()
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{test_settings.redis_prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@dataclass
class LiveServer:
    """A running server and the demo credentials to talk to it."""

    base_url: str
    ws_url: str
    settings: Settings
    credentials: dict[str, Any]
    db: asyncpg.Pool
    http: httpx.AsyncClient
    server: uvicorn.Server

    @property
    def services(self) -> Services:
        """The running app's services (for what a client cannot observe)."""
        services: Services = self.server.config.loaded_app.app.state.services  # type: ignore[attr-defined]
        return services

    @property
    def operator_token(self) -> str:
        """The demo dispatcher's token."""
        token: str = self.credentials["operators"]["dispatcher"]
        return token

    def signed_headers(
        self,
        body: bytes,
        *,
        gateway: str = "panic",
        key: str | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> dict[str, str]:
        """Headers of a correctly signed gateway delivery."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        secret = secret if secret is not None else self.credentials["gateways"][gateway]
        return {
            "Content-Type": "application/json",
            "X-ERSS-Gateway": gateway,
            "X-ERSS-Timestamp": ts,
            "X-ERSS-Signature": sign(secret, ts, body),
            "Idempotency-Key": key or uuid.uuid4().hex,
        }

    async def post_panic(self, payload: dict[str, Any], **kwargs: Any) -> httpx.Response:
        """POST a signed panic trigger."""
        body = json.dumps(payload).encode()
        return await self.http.post(
            "/v1/gateways/panic", content=body, headers=self.signed_headers(body, **kwargs)
        )

    def console(self, **query: str) -> Any:
        """A console websocket connection (use with ``async with``)."""
        return websockets.connect(
            self.ws_url + "/v1/ws/console" + _query(query),
            additional_headers={"Authorization": f"Bearer {self.operator_token}"},
        )

    def mdt(self, unit_id: str, **query: str) -> Any:
        """An MDT websocket connection for one unit."""
        token = self.credentials["units"][unit_id]
        return websockets.connect(
            self.ws_url + "/v1/ws/mdt" + _query(query),
            additional_headers={"Authorization": f"Bearer {token}"},
        )

    async def count(self, table: str) -> int:
        """Rows in one of the test schema's tables."""
        value: int = await self.db.fetchval(f"SELECT count(*) FROM {table}")
        return value


def _query(params: dict[str, str]) -> str:
    return ("?" + "&".join(f"{k}={v}" for k, v in params.items())) if params else ""


async def start_server(settings: Settings) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Serve the app on a free loopback port in this event loop."""
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        **websocket_options(settings),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("uvicorn did not start in 5 s")
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return server, task, port


async def stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Shut the server down as SIGTERM would."""
    server.should_exit = True
    # Shutdown may legitimately take a while on a loaded machine: the final position
    # flush, and the pool's close (bounded at 5 s for a connection on a dead link).
    await asyncio.wait_for(task, 30)


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveServer]:
    """The demo city served by a real uvicorn on a random port."""
    assert settings.database_url
    db = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=4)
    async with db.acquire() as conn:
        await migrate(conn, settings.db_schema)
        credentials = await load_demo(conn, base_url="http://127.0.0.1")
    server, task, port = await start_server(settings)
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        try:
            yield LiveServer(
                base_url, f"ws://127.0.0.1:{port}", settings, credentials, db, http, server
            )
        finally:
            await stop_server(server, task)
            await db.close()


async def receive_until(
    ws: Any, predicate: Any, *, within: float = 5.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read messages until one matches; returns it and every message read before it."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await ws.recv())
            if predicate(message):
                return message, seen
            seen.append(message)


async def wait_for(
    condition: Callable[[], Awaitable[Any]], *, within: float = 5.0, what: str = "the condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy (returned), failing after
    ``within`` seconds. Tests wait for what they need, never for a sleep to be long
    enough."""
    deadline = time.monotonic() + within
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        await asyncio.sleep(0.02)


def event_of(kind: str, **fields: Any) -> Any:
    """A predicate matching an event message of that type (and those event fields)."""

    def match(message: dict[str, Any]) -> bool:
        if message.get("type") != "event" or message["event"]["type"] != kind:
            return False
        return all(message["event"].get(k) == v for k, v in fields.items())

    return match

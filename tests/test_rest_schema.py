"""The operator REST API against its own OpenAPI document, by schemathesis.

A real server (uvicorn, the real app, the demo city in a schema of its own) runs on a
thread of its own, since schemathesis calls it synchronously. For each operator route,
valid and invalid requests generated from the served document, with a city-wide token:
never a 5xx, every answer's status, content type and body as documented (401, 404,
409, 422 with the one ErrorBody), and the API refuses what the document says is
invalid. Bounded: a few dozen examples per route.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from dispatch.db import create_pool, migrate
from dispatch.demo import load_demo
from dispatch.settings import Settings
from tests.conftest import start_server, stop_server

EXAMPLES = 25


@dataclass
class Served:
    """The server on its thread: where it listens and the demo's credentials."""

    base_url: str
    credentials: dict[str, Any]


class _LoopThread:
    """An event loop on a thread, to serve while the test's own thread blocks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(service_urls: tuple[str, str]) -> Iterator[Served]:
    """The demo city served on a thread for the whole module."""
    db_url, redis_url = service_urls
    tag = uuid.uuid4().hex[:12]
    config = Settings(
        database_url=db_url,
        redis_url=redis_url,
        db_schema=f"t_{tag}",
        redis_prefix=f"t_{tag}:",
        relay_poll_s=0.2,
    )
    loop = _LoopThread()

    async def start() -> tuple[Any, Any, int, dict[str, Any]]:
        pool = await create_pool(db_url, config.db_schema, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await migrate(conn, config.db_schema)
                credentials = await load_demo(conn, base_url="http://127.0.0.1")
        finally:
            await pool.close()
        server, task, port = await start_server(config)
        return server, task, port, credentials

    async def clean() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{config.db_schema}" CASCADE')
        finally:
            await conn.close()
        client = aioredis.from_url(redis_url)
        try:
            keys = [k async for k in client.scan_iter(match=f"{config.redis_prefix}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    try:
        server, task, port, credentials = loop.run(start())
        try:
            yield Served(f"http://127.0.0.1:{port}", credentials)
        finally:
            loop.run(stop_server(server, task))
    finally:
        loop.run(clean())
        loop.close()


def _operator_operations(base_url: str) -> dict[str, Any]:
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    # Unknown query parameters are ignored on purpose (a console's cache-buster must not
    # break a call), so invalid requests are made invalid in the documented parts only.
    schema.config.generation.update(allow_extra_parameters=False)
    operations = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if "operators" in (operation.tags or []):
            operations[operation.label] = operation
    return operations


# The operator routes (their labels) are read from the served document in the test; this
# list only names the parameters, and the test fails when the two disagree.
ROUTES = [
    "GET /v1/incidents",
    "GET /v1/incidents/{incident_id}",
    "POST /v1/incidents/{incident_id}/assign",
    "POST /v1/assignments/{assignment_id}/cancel",
    "POST /v1/reports/{report_id}/split",
    "POST /v1/incidents/{incident_id}/location",
    "POST /v1/incidents/{incident_id}/confirm",
    "POST /v1/incidents/{incident_id}/notes",
    "POST /v1/incidents/{incident_id}/classify",
    "POST /v1/incidents/{incident_id}/close",
    "POST /v1/incidents/{incident_id}/merge",
    "GET /v1/units",
    "POST /v1/units/{unit_id}/status",
    "GET /v1/callers/{number}",
    "GET /v1/incident-types",
    "GET /v1/zones",
    "GET /v1/geocode",
]


def test_the_route_list_is_the_served_one(served: Served) -> None:
    assert sorted(_operator_operations(served.base_url)) == sorted(ROUTES)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", ROUTES)
def test_route_answers_as_documented(served: Served, label: str, mode: GenerationMode) -> None:
    operation = _operator_operations(served.base_url)[label]
    token = served.credentials["operators"]["dispatcher"]
    headers = {"Authorization": f"Bearer {token}"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        case.call_and_validate(base_url=served.base_url, headers=headers, timeout=10)

    check()

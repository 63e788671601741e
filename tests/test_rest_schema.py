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
from tests.conftest import LiveServer, start_server, stop_server
from tests.test_walking_skeleton import panic, zone_point

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
    "GET /v1/vehicles",
    "GET /v1/vehicles/{registration}",
    "PUT /v1/vehicles/{registration}",
    "POST /v1/volunteers",
    "GET /v1/volunteers",
    "GET /v1/volunteers/{volunteer_id}",
    "POST /v1/volunteers/{volunteer_id}/verification",
    "POST /v1/volunteers/{volunteer_id}/opt-out",
    "DELETE /v1/volunteers/{volunteer_id}",
    "GET /v1/incidents/{incident_id}/volunteers",
    "POST /v1/incidents/{incident_id}/volunteer-consent",
    "POST /v1/incidents/{incident_id}/volunteers/{volunteer_id}/stand-down",
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


# --- the same promises, spelled out: hostile input and the one error body ------------

STORED = ("incidents", "reports", "assignments", "events")


def _is_error_body(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and set(body) <= {"error", "detail", "fields"}
        and isinstance(body.get("error"), str)
        and isinstance(body.get("detail"), str)
        and bool(body["detail"])
        and isinstance(body.get("fields", []), list)
    )


async def test_hostile_ids_and_text_are_a_422_and_change_nothing(live: LiveServer) -> None:
    """Ids beyond int64, negative ids, NUL and other control characters, lone
    surrogates, in paths, queries and bodies: 422 naming the field, nothing written."""
    answer = await live.post_panic(panic(zone_point("capital"), trigger="h"))
    incident_id = answer.json()["incident_id"]
    before = {t: await live.count(t) for t in STORED}
    auth = {"Authorization": f"Bearer {live.operator_token}", "Content-Type": "application/json"}
    beyond = str(2**64)
    cases: dict[str, tuple[str, str, bytes | None, str]] = {
        "path id beyond int64": ("GET", f"/v1/incidents/{beyond}", None, "incident_id"),
        "path id just beyond int64": ("GET", f"/v1/incidents/{2**63}", None, "incident_id"),
        "negative path id": (
            "POST",
            "/v1/incidents/-3/close",
            b'{"disposition":"x"}',
            "incident_id",
        ),
        "zero assignment id": (
            "POST",
            "/v1/assignments/0/cancel",
            b'{"reason":"x"}',
            "assignment_id",
        ),
        "body id beyond int64": (
            "POST",
            f"/v1/incidents/{incident_id}/merge",
            b'{"into": ' + beyond.encode() + b"}",
            "into",
        ),
        "negative body id": ("POST", f"/v1/incidents/{incident_id}/merge", b'{"into": -1}', "into"),
        "NUL in a note": (
            "POST",
            f"/v1/incidents/{incident_id}/notes",
            b'{"text": "help\\u0000me"}',
            "text",
        ),
        "escape character in a reason": (
            "POST",
            f"/v1/incidents/{incident_id}/confirm",
            b'{"reason": "\\u001b[31m"}',
            "reason",
        ),
        "lone surrogate in a disposition": (
            "POST",
            f"/v1/incidents/{incident_id}/close",
            b'{"disposition": "\\ud800"}',
            "disposition",
        ),
        "NUL in a unit id": (
            "POST",
            "/v1/units/capital%00/status",
            b'{"status": "off_duty", "reason": "x"}',
            "unit_id",
        ),
        "NUL in a phone number": ("GET", "/v1/callers/%2B91%00", None, "number"),
        "NUL in a status filter": ("GET", "/v1/incidents?status=new%00", None, "status"),
        "NUL in a geocode query": ("GET", "/v1/geocode?q=Kalpana%00", None, "q"),
        "body not UTF-8": (
            "POST",
            f"/v1/incidents/{incident_id}/notes",
            b'{"text": "\xff"}',
            "body",
        ),
        "body not JSON": ("POST", f"/v1/incidents/{incident_id}/notes", b"{text", "body"),
    }
    for name, (method, path, body, field) in cases.items():
        response = await live.http.request(method, path, content=body, headers=auth)
        assert response.status_code == 422, (name, response.text)
        error = response.json()
        assert _is_error_body(error), (name, error)
        assert error["error"] == "MalformedRequest", name
        assert any(field in map(str, f["loc"]) for f in error["fields"]), (name, error)
        assert field in error["detail"] or field == "body", (name, error)
    assert {t: await live.count(t) for t in STORED} == before


async def test_every_refusal_has_the_one_error_body(live: LiveServer) -> None:
    """401, 404 (unknown route too), 405, 409 and 422 all answer ErrorBody; a string
    detail, and the per-field list in fields."""
    auth = {"Authorization": f"Bearer {live.operator_token}"}
    answer = await live.post_panic(panic(zone_point("capital"), trigger="e"))
    incident_id = answer.json()["incident_id"]
    await live.http.post(
        f"/v1/incidents/{incident_id}/close", json={"disposition": "resolved"}, headers=auth
    )
    cases = {
        "no token": ("GET", "/v1/incidents", None, {}, 401),
        "unknown route": ("GET", "/v1/nowhere", None, auth, 404),
        "unknown incident": ("GET", "/v1/incidents/123456", None, auth, 404),
        "wrong method": ("DELETE", "/v1/incidents", None, auth, 405),
        "closed twice": (
            "POST",
            f"/v1/incidents/{incident_id}/close",
            {"disposition": "again"},
            auth,
            409,
        ),
        "missing field": ("POST", f"/v1/incidents/{incident_id}/notes", {}, auth, 422),
        "unknown type": (
            "POST",
            f"/v1/incidents/{incident_id}/classify",
            {"type": "no-such-type", "reason": "x"},
            auth,
            422,
        ),
    }
    for name, (method, path, body, headers, status) in cases.items():
        response = await live.http.request(method, path, json=body, headers=headers)
        assert response.status_code == status, (name, response.text)
        assert _is_error_body(response.json()), (name, response.text)
        if status == 422:
            assert response.json()["fields"], name
    wrong = await live.http.delete("/v1/incidents", headers=auth)
    assert "GET" in wrong.headers["allow"]

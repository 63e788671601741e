"""Operations: readiness follows PostgreSQL, metrics follow the incidents."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from dispatch.db import create_pool, migrate
from dispatch.demo import load_demo
from dispatch.settings import Settings
from tests.conftest import (
    LiveServer,
    event_of,
    receive_until,
    require,
    start_server,
    stop_server,
)
from tests.test_walking_skeleton import panic, zone_point


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that the test can cut and restore, to make the
    database unreachable for the app without stopping the shared server."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        if self._server is None:  # cut while this connection was being made
            writer.close()
            up_writer.close()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        with contextlib.suppress(OSError):
            dst.close()


@pytest.fixture
async def proxied(settings: Settings) -> AsyncIterator[tuple[str, TcpProxy]]:
    """A live server whose database connections go through a proxy the test controls."""
    assert settings.database_url
    url = urlsplit(settings.database_url)
    require(
        url.hostname is not None and url.port is not None,
        "a TCP database URL (ERSS_TEST_DATABASE_URL): the embedded server listens on a socket",
    )
    assert url.hostname is not None
    assert url.port is not None
    proxy = TcpProxy(url.hostname, url.port)
    await proxy.start()
    via_proxy = urlunsplit(url._replace(netloc=f"{url.username or ''}@127.0.0.1:{proxy.port}"))
    app_settings = settings.model_copy(update={"database_url": via_proxy})
    pool = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=1)
    async with pool.acquire() as conn:
        await migrate(conn, settings.db_schema)
        await load_demo(conn, base_url="")
    await pool.close()
    server, task, port = await start_server(app_settings)
    try:
        yield f"http://127.0.0.1:{port}", proxy
    finally:
        await proxy.start()  # let the app shut down cleanly
        await stop_server(server, task)
        await proxy.stop()


async def _ready(client: httpx.AsyncClient, base: str, want: int) -> dict[str, object]:
    body: dict[str, object] = {}
    for _ in range(60):
        response = await client.get(base + "/readyz")
        body = response.json()
        if response.status_code == want:
            return body
        await asyncio.sleep(0.25)
    raise AssertionError(f"/readyz never answered {want}: {body}")


async def test_readyz_goes_red_without_postgresql_and_green_again(
    proxied: tuple[str, TcpProxy],
) -> None:
    base, proxy = proxied
    async with httpx.AsyncClient(timeout=10) as client:
        ready = await _ready(client, base, 200)
        assert ready["checks"] == {"postgres": "ok", "migrations": "ok", "redis": "ok"}
        await proxy.stop()
        down = await _ready(client, base, 503)
        assert "unreachable" in str(down["checks"]["postgres"])  # type: ignore[index]
        assert (await client.get(base + "/healthz")).status_code == 200
        await proxy.start()
        await _ready(client, base, 200)


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = (
        rf"^{re.escape(name)}(?:\{{{re.escape(wanted)}\}})? (\S+)$"
        if labels
        else (rf"^{re.escape(name)} (\S+)$")
    )
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_metrics_follow_incidents_offers_and_accepts(live: LiveServer) -> None:
    before = (await live.http.get("/metrics")).text
    point = zone_point("capital")
    async with live.console() as console:
        await console.recv()
        during = (await live.http.get("/metrics")).text
        assert _sample(during, "erss_websocket_clients", kind="console") == 1
        answer = (await live.post_panic(panic(point))).json()
        offer, _ = await receive_until(console, event_of("assignment.offered"))
    async with live.mdt(offer["event"]["unit_id"]) as mdt:
        await mdt.recv()
        assignment = offer["event"]["data"]["assignment_id"]
        await mdt.send(json.dumps({"type": "accept", "assignment_id": assignment}))
        await receive_until(mdt, lambda m: m["type"] == "ack")
    after = (await live.http.get("/metrics")).text
    assert answer["status"] == "offered"
    for name, labels in (
        ("erss_reports_total", {"channel": "panic", "outcome": "new"}),
        ("erss_incidents_total", {"channel": "panic", "status": "offered"}),
        ("erss_time_to_dispatch_seconds_count", {}),
        ("erss_time_to_accept_seconds_count", {}),
    ):
        assert _sample(after, name, **labels) == _sample(before, name, **labels) + 1, name
    assert _sample(after, "erss_websocket_clients", kind="console") == 0


async def test_garbage_collections_are_timed_by_generation(live: LiveServer) -> None:
    """A full collection stops every socket of the instance: operators see how long."""
    before = (await live.http.get("/metrics")).text
    gc.collect()
    gc.collect(0)
    after = (await live.http.get("/metrics")).text
    full = "erss_gc_pause_seconds_count"
    assert _sample(after, full, generation="2") >= _sample(before, full, generation="2") + 1
    assert _sample(after, full, generation="0") >= _sample(before, full, generation="0") + 1
    assert _sample(after, "erss_gc_pause_seconds_sum", generation="2") > 0


async def test_an_instance_stops_timing_garbage_collections_when_it_stops(
    settings: Settings,
) -> None:
    """The timer is the process's (gc.callbacks), the instance's only while it runs: one
    left behind by a stopped app would time every later collection into it."""
    assert settings.database_url
    pool = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=1)
    async with pool.acquire() as conn:
        await migrate(conn, settings.db_schema)
        await load_demo(conn, base_url="")
    await pool.close()
    before = list(gc.callbacks)
    server, task = (await start_server(settings))[:2]
    try:
        assert len(gc.callbacks) == len(before) + 1
    finally:
        await stop_server(server, task)
    assert gc.callbacks == before


def test_json_logs_carry_incident_and_unit_ids(capfd: pytest.CaptureFixture[str]) -> None:
    import logging

    from dispatch.cli import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("json")
        logging.getLogger("dispatch.offers").info(
            "unit offered", extra={"incident_id": 42, "unit_id": "capital-pcr-1"}
        )
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = capfd.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["message"] == "unit offered"
    assert (record["incident_id"], record["unit_id"]) == (42, "capital-pcr-1")
    assert record["level"] == "INFO"
    assert record["logger"] == "dispatch.offers"

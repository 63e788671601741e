"""Websockets ride through a PostgreSQL restart.

The shared PostgreSQL must never stop, so this test runs its own (``initdb``/``pg_ctl``;
as root, as the ``postgres`` user) on a free port, stops it by its postmaster's pid and
starts it again on the same data. During the outage an MDT's command is answered
``unavailable`` and its socket stays open; a new connection is closed with 1013; after
the restart the same socket works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets
from websockets.exceptions import ConnectionClosed

from dispatch.db import create_pool, migrate
from dispatch.demo import load_demo
from dispatch.settings import Settings
from tests.conftest import receive_until, start_server, stop_server

PG_BIN = Path(os.environ.get("ERSS_PG_BIN", "/usr/lib/postgresql/15/bin"))
UNIT = "capital-pcr-1"

pytestmark = pytest.mark.skipif(
    not (PG_BIN / "initdb").exists(), reason=f"no PostgreSQL binaries in {PG_BIN}"
)


class _Postgres:
    """A throw-away cluster on a free loopback port, stopped by its postmaster's pid."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.root = Path(tempfile.mkdtemp(prefix="erss-wsout-"))
        self.data = self.root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_root = os.geteuid() == 0
        if self._as_root:  # PostgreSQL refuses to run as root
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(PG_BIN / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster), waited for."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[_Postgres]:
    pg = _Postgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


@pytest.fixture
async def outage_settings(
    private_pg: _Postgres, service_urls: tuple[str, str]
) -> AsyncIterator[Settings]:
    tag = uuid.uuid4().hex[:12]
    settings = Settings(
        database_url=private_pg.url,
        redis_url=service_urls[1],
        db_schema=f"t_{tag}",
        redis_prefix=f"t_{tag}:",
        relay_poll_s=0.2,
    )
    yield settings
    client = aioredis.from_url(service_urls[1])
    try:
        keys = [k async for k in client.scan_iter(match=f"{settings.redis_prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _until(
    attempt: Callable[[], Awaitable[dict[str, Any]]],
    done: Callable[[dict[str, Any]], bool],
    within: float,
) -> dict[str, Any]:
    """Repeat ``attempt`` until its answer is ``done``; the last answer otherwise fails."""
    deadline = time.monotonic() + within
    while True:
        answer = await attempt()
        if done(answer) or time.monotonic() > deadline:
            assert done(answer), answer
            return answer
        await asyncio.sleep(0.2)


async def test_mdt_socket_rides_through_a_postgres_restart(
    private_pg: _Postgres, outage_settings: Settings
) -> None:
    assert outage_settings.database_url
    pool = await create_pool(
        outage_settings.database_url, outage_settings.db_schema, min_size=1, max_size=2
    )
    async with pool.acquire() as conn:
        await migrate(conn, outage_settings.db_schema)
        credentials = await load_demo(conn, base_url="http://127.0.0.1")
    await pool.close()
    server, task, port = await start_server(outage_settings)
    ws_url = f"ws://127.0.0.1:{port}"
    token = credentials["units"][UNIT]
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            websockets.connect(ws_url + "/v1/ws/mdt", additional_headers=headers) as mdt,
            websockets.connect(
                ws_url + "/v1/ws/console",
                additional_headers={
                    "Authorization": f"Bearer {credentials['operators']['dispatcher']}"
                },
            ) as console,
        ):
            assert json.loads(await mdt.recv())["type"] == "snapshot"
            position = json.loads(await console.recv())["position"]

            async def command(message: dict[str, Any]) -> dict[str, Any]:
                await mdt.send(json.dumps(message))
                reply, _ = await receive_until(
                    mdt, lambda m: m["type"] in ("ack", "error"), within=30
                )
                return reply

            private_pg.stop()
            reply = await command({"type": "status", "status": "off_duty"})
            assert (reply["type"], reply["error"], reply["request"]) == (
                "error",
                "unavailable",
                "status",
            ), reply
            # The socket is still open and still answers.
            await mdt.send(json.dumps({"type": "ping"}))
            await receive_until(mdt, lambda m: m["type"] == "pong")
            await console.send(json.dumps({"type": "resume", "after": position}))
            reply, _ = await receive_until(console, lambda m: m["type"] == "error", within=30)
            assert (reply["error"], reply["request"]) == ("unavailable", "resume"), reply
            await console.send(json.dumps({"type": "ping"}))
            await receive_until(console, lambda m: m["type"] == "pong")

            # A new connection cannot be authenticated: told, and closed with 1013.
            for path, extra in (("/v1/ws/mdt", headers), (f"/v1/ws/console?token={token}", {})):
                async with websockets.connect(ws_url + path, additional_headers=extra) as refused:
                    error = json.loads(await asyncio.wait_for(refused.recv(), 30))
                    assert error["error"] == "unavailable", error
                    with pytest.raises(ConnectionClosed) as closed:
                        await asyncio.wait_for(refused.recv(), 10)
                    assert closed.value.rcvd is not None
                    assert closed.value.rcvd.code == 1013

            private_pg.start()
            # The pool finds its connections dead and reconnects: the resent command
            # goes through on the same socket.
            reply = await _until(
                lambda: command({"type": "status", "status": "off_duty"}),
                lambda r: r["type"] == "ack",
                within=30,
            )
            assert reply["unit"]["status"] == "off_duty"
            await mdt.send(json.dumps({"type": "ping"}))
            await receive_until(mdt, lambda m: m["type"] == "pong")
            # The console's resume goes through again too.
            await console.send(json.dumps({"type": "resume", "after": position}))
            await receive_until(console, lambda m: m["type"] == "replayed", within=30)
        async with websockets.connect(ws_url + "/v1/ws/mdt", additional_headers=headers) as again:
            snapshot = json.loads(await asyncio.wait_for(again.recv(), 30))
            assert snapshot["type"] == "snapshot"
            assert snapshot["unit"]["status"] == "off_duty"
    finally:
        await stop_server(server, task)

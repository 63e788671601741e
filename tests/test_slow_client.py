"""One console that stops reading never slows the others; it is told and cut off."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import LiveServer


async def test_stuck_console_is_disconnected_and_the_others_get_everything(
    live: LiveServer,
) -> None:
    # A tiny receive buffer and a one-message client queue: once the stuck client stops
    # calling recv(), the server's sends back up within a few hundred events.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", int(live.base_url.rsplit(":", 1)[1])))
    headers = {"Authorization": f"Bearer {live.operator_token}"}
    async with (
        websockets.connect(
            live.ws_url + "/v1/ws/console", sock=sock, additional_headers=headers, max_queue=1
        ) as stuck,
        live.console() as healthy,
    ):
        await stuck.recv()
        await healthy.recv()
        assert live.services.hub.client_count == 2
        received: list[int] = []
        caught_up = asyncio.Event()
        total = 0

        async def read_healthy() -> None:
            while True:
                message = json.loads(await healthy.recv())
                if message["type"] == "event":
                    received.append(int(message["position"]))
                    if total and len(received) >= total:
                        caught_up.set()

        reader = asyncio.create_task(read_healthy())
        # Kernel socket buffers on loopback hold megabytes, so the log is fed in bulk:
        # 1 KiB notes, 2,000 at a time, until the stuck console is cut off.
        for _ in range(20):
            if live.services.hub.client_count < 2:
                break
            await live.db.execute(
                "INSERT INTO events (type, actor, data) SELECT 'incident.note_added', 'test',"
                " jsonb_build_object('text', repeat('x', 1024)) FROM generate_series(1, 2000);"
                f" NOTIFY erss_events_{live.settings.db_schema}"
            )
            await asyncio.sleep(0.5)
        assert live.services.hub.client_count == 1, "the stuck console was never cut off"

        total = await live.db.fetchval("SELECT count(*) FROM events")
        if len(received) >= total:
            caught_up.set()
        await asyncio.wait_for(caught_up.wait(), 10)
        reader.cancel()
        assert received == list(range(1, total + 1))

        async def drain_stuck() -> None:
            while True:
                await stuck.recv()

        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(drain_stuck(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4008

"""The end-to-end benchmark's own instruments: the statement counter wrapped around the
server (bench/e2e_serve.py) and the load generator's HTTP client (bench/e2e_http.py).

A miscount would mislead every comparison made with bench/e2e.py, so the counter is
checked against real PostgreSQL and a real Starlette app, and the client against a real
socket server.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import e2e_serve
from e2e_http import HttpPool


@pytest.fixture
def counter() -> Iterator[None]:
    """The counter installed for one test, with clean totals; removed afterwards."""
    e2e_serve.counts.clear()
    e2e_serve.statements.clear()
    uninstall = e2e_serve.install()
    try:
        yield
    finally:
        uninstall()
        e2e_serve.counts.clear()
        e2e_serve.statements.clear()


@pytest.fixture
async def conn(service_urls: tuple[str, str]) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(service_urls[0])
    try:
        yield connection
    finally:
        await connection.close()


def measures(origin: str) -> dict[str, int]:
    return {m: n for (o, m), n in e2e_serve.counts.items() if o == origin}


async def test_counter_counts_statements_prepares_and_transactions(
    counter: None, conn: asyncpg.Connection
) -> None:
    async with conn.transaction():
        assert await conn.fetchval("SELECT $1::int + 1", 1) == 2
    # Cached on this connection now: one statement, one round trip, no prepare.
    assert await conn.fetchval("SELECT $1::int + 1", 2) == 3
    await conn.execute("SELECT 1")
    assert measures("other") == {
        "statements": 5,  # BEGIN, the query twice, COMMIT, the simple query
        "round_trips": 6,  # and the first execution's prepare
        "prepares": 1,
        "transactions": 1,
    }
    texts = {t: n for (_, t), n in e2e_serve.statements.items()}
    assert texts["SELECT $1::int + 1"] == 2


async def test_counter_names_the_request_that_sent_the_statements(
    counter: None, conn: asyncpg.Connection
) -> None:
    async def item(request: Request) -> JSONResponse:
        value = await conn.fetchval("SELECT $1::int", int(request.path_params["n"]))
        return JSONResponse({"n": value})

    app = Starlette(routes=[Route("/items/{n}", item)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for n in (7, 8):
            assert (await http.get(f"/items/{n}")).json() == {"n": n}
    await conn.fetchval("SELECT 2")
    assert measures("GET /items/{n}")["statements"] == 2
    assert measures("other")["statements"] == 1


def test_dump_writes_the_totals_with_a_new_sequence_each_time(
    counter: None, tmp_path: Path
) -> None:
    e2e_serve.counts["lifespan", "statements"] += 3
    e2e_serve.statements["lifespan", "SELECT 1"] += 3
    path = tmp_path / "counts.json"
    e2e_serve.dump(path)
    first = json.loads(path.read_text())
    e2e_serve.dump(path)
    second = json.loads(path.read_text())
    assert first["counts"] == {"lifespan": {"statements": 3}}
    assert first["statements"] == {"lifespan": {"SELECT 1": 3}}
    assert second["seq"] == first["seq"] + 1


async def serve_http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bytes]
) -> None:
    """Answer each request on the connection with 202 and its own body back."""
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await reader.readexactly(length)
            seen.append(head.split(b"\r\n", 1)[0])
            await asyncio.sleep(0.01)
            writer.write(
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass  # the client closed its keep-alive connection: how every connection ends
    finally:
        writer.close()


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    seen: list[bytes] = []
    server = await asyncio.start_server(lambda r, w: serve_http(r, w, seen), "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port, seen
    finally:
        server.close()
        await server.wait_closed()


async def test_http_pool_reuses_connections_and_queues_beyond_its_limit(
    echo_server: tuple[int, list[bytes]],
) -> None:
    port, seen = echo_server
    pool = HttpPool("127.0.0.1", port, limit=2)
    raws = [
        pool.request_bytes("POST", f"/p/{i}", {"X-Test": "1"}, json.dumps({"i": i}).encode())
        for i in range(6)
    ]
    try:
        answers: list[Any] = list(await asyncio.gather(*(pool.send(raw) for raw in raws)))
        again = await pool.send(raws[0])
    finally:
        pool.close()
    assert [a.status for a in answers] == [202] * 6
    assert [json.loads(a.body) for a in answers] == [{"i": i} for i in range(6)]
    assert again.body == b'{"i": 0}'
    assert pool.opened == 2  # keep-alive: six requests and one more on two connections
    assert pool.waits >= 4
    expected = [f"POST /p/{i} HTTP/1.1".encode() for i in range(6)] + [b"POST /p/0 HTTP/1.1"]
    assert sorted(seen) == sorted(expected)

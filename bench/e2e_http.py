"""A lean HTTP/1.1 client for the benchmark's load generators: asyncio transports and
httptools' response parser (the C parser uvicorn uses), one request at a time per
keep-alive connection.

httpx costs several times more CPU per request (its pool, its models, its h11 parser);
on two cores that made the sender itself a bottleneck near 200-300 requests/s. Here a
request is bytes built before the run, so sending one costs a write and a parse.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import NamedTuple, cast

import httptools


class HttpError(Exception):
    """The connection failed or closed before the answer was complete."""


class Answer(NamedTuple):
    """An HTTP answer, and when its request went on the wire (``time.monotonic()``)."""

    status: int
    body: bytes
    written_at: float


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``request`` is called by one task at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self.usable = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they act as one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(HttpError(f"unparsable answer: {err}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(HttpError(f"connection closed: {exc!r}"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self._parser.should_keep_alive():
            self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self._parser.get_status_code(), b"".join(self._body)))

    def _fail(self, err: HttpError) -> None:
        self.usable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(err)

    async def request(self, raw: bytes) -> Answer:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        written_at = time.monotonic()
        self._transport.write(raw)
        status, body = await self._waiter
        return Answer(status, body, written_at)

    def close(self) -> None:
        self.usable = False
        if self._transport is not None:
            self._transport.close()


@dataclass
class HttpPool:
    """Keep-alive connections to one host; at most ``limit`` at once (then callers queue,
    and ``waits`` counts how often that happened)."""

    host: str
    port: int
    limit: int = 256
    waits: int = 0
    opened: int = 0
    _idle: list[_Connection] = field(default_factory=list)
    _busy: int = 0
    _freed: asyncio.Condition | None = None

    def request_bytes(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> bytes:
        """One request as it goes on the wire (build these before the timed part)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def _acquire(self) -> _Connection:
        if self._freed is None:
            self._freed = asyncio.Condition()
        while True:
            while self._idle:
                conn = self._idle.pop()
                if conn.usable:
                    self._busy += 1
                    return conn
            if self._busy < self.limit:
                self._busy += 1
                try:
                    _, conn = await asyncio.get_running_loop().create_connection(
                        _Connection, self.host, self.port
                    )
                except BaseException:
                    self._busy -= 1
                    raise
                self.opened += 1
                return conn
            self.waits += 1
            async with self._freed:
                await self._freed.wait()

    async def _release(self, conn: _Connection) -> None:
        self._busy -= 1
        if conn.usable:
            self._idle.append(conn)
        if self._freed is not None:
            async with self._freed:
                self._freed.notify()

    async def send(self, raw: bytes) -> Answer:
        """Send a prebuilt request; HttpError if the connection failed."""
        conn = await self._acquire()
        try:
            return await conn.request(raw)
        except OSError as err:
            conn.close()
            raise HttpError(repr(err)) from err
        finally:
            await self._release(conn)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

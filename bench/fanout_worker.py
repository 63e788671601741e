"""One client process of bench/fanout.py: a share of the MDT and console websockets.

    python bench/fanout_worker.py JOB.json RESULT.json     # started by bench/fanout.py

One Python process cannot hold ten thousand websockets and still read every event on
time, so bench/fanout.py splits the clients over several of these, each with its own
event loop. The job file lists this worker's clients; commands arrive on stdin, one
word a line, and every answer is one JSON line on stdout:

- ``connect mdt`` / ``connect console``: open those clients' websockets, at most
  ``window`` handshakes at a time, each counted once its snapshot has arrived;
  answers ``{"event": "connected", ...}``.
- ``connect storm``: the same for a reconnect storm's consoles (bench/fanout_storm.py),
  which a worker of their own opens all at once: they authenticate and read their
  snapshot like any console, then stay and read events.
- ``ping``: every MDT starts sending a location every ``ping_interval_s`` (random phase,
  a little jitter); answers ``{"event": "pinging"}``.
- ``stop``: writes what every client received to RESULT.json, drops the sockets and
  exits; answers ``{"event": "done"}``.

Times are ``time.perf_counter()``, which on Linux is CLOCK_MONOTONIC: one clock for
the whole machine, so bench/fanout.py can subtract its POST times from these.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

# The MDT bot's way back to duty after accepting (as in bench/e2e.py; repeated here so
# this process does not import e2e's httpx/asyncpg stack ten times over).
FREE_SEQUENCE = ("on_scene", "available")
# Substrings tested before parsing: a console gets every event of the city, and only
# one kind of them is timed, so most messages are never decoded.
CREATED_MARK = '"incident.created"'


@dataclass
class Client:
    """One websocket client: an MDT (unit token) or a console (operator token)."""

    kind: str  # "mdt" | "console" | "storm" (a console of the reconnect storm)
    name: str
    token: str
    lat: float = 0.0
    lon: float = 0.0
    ws: ClientConnection | None = None
    handshake_s: float = 0.0


@dataclass
class Record:
    """Everything this worker saw; written to RESULT.json at the end."""

    # (incident_id, received) for each incident.created on each console.
    created: list[tuple[int, float]] = field(default_factory=list)
    # (incident_id, unit_id, received) for each assignment.offered on its MDT.
    offered: list[tuple[int, str, float]] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)  # "console:type" / "mdt:type"
    acks: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)
    closed: Counter[str] = field(default_factory=Counter)  # close code while measuring
    # (kind, close code, when) of the same closes, to tell which came during a storm.
    closed_at: list[tuple[str, str, float]] = field(default_factory=list)
    connect_failures: Counter[str] = field(default_factory=Counter)
    pings_sent: int = 0
    ping_failures: int = 0


def first_type(raw: str | bytes) -> str | None:
    """The type of a connection's first message. A console's snapshot is megabytes at
    tens of thousands of units: parsed whole, a thousand of them stall this worker's
    loop for minutes and its MDTs miss the server's keepalives (every MDT of a 25,000
    run was closed 1011 that way); its opening says what it is."""
    # A storm console reads its snapshot undecoded (bytes): only the opening is decoded.
    opening = raw[:64].decode(errors="replace") if isinstance(raw, bytes) else raw[:64]
    if opening.startswith('{"type":"snapshot"'):
        return "snapshot"
    message = json.loads(raw)
    return str(message.get("type")) if isinstance(message, dict) else None


class Worker:
    """This process's clients, and what they saw."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.url: str = job["ws_url"]
        self.window: int = job["window"]
        self.compression: str | None = "deflate" if job["deflate"] else None
        self.source_ip: str | None = job.get("source_ip")
        self.ping_interval_s: float = job["ping_interval_s"]
        self.free_units: bool = job["free_units"]
        self.rng = random.Random(job["seed"])
        self.clients = [Client(**c) for c in job["clients"]]
        self.record = Record()
        self.readers: list[asyncio.Task[None]] = []
        self.pingers: list[asyncio.Task[None]] = []
        self.stopping = False
        self.failures_in_a_row = 0
        self.open_timeout_s: float = job["open_timeout_s"]

    # ------------------------------------------------------------------ connecting

    async def connect_all(self, kind: str) -> dict[str, Any]:
        """Open every ``kind`` client, ``window`` at a time (the server's accept backlog
        and its PostgreSQL pool both have limits; a flood only times out)."""
        todo = [c for c in self.clients if c.kind == kind]
        gate = asyncio.Semaphore(self.window)
        started = time.perf_counter()
        self.failures_in_a_row = 0

        async def one(client: Client) -> None:
            async with gate:
                # A full window failing in a row means the server takes no more (out of
                # descriptors, say): each further try would only wait out its timeout.
                if self.failures_in_a_row >= self.window:
                    self.record.connect_failures["skipped after repeated failures"] += 1
                    return
                await self.connect(client)
                self.failures_in_a_row = 0 if client.ws is not None else self.failures_in_a_row + 1

        await asyncio.gather(*(one(c) for c in todo))
        ok = [c for c in todo if c.ws is not None]
        return {
            "event": "connected",
            "kind": kind,
            "ok": len(ok),
            "failed": len(todo) - len(ok),
            "failures": dict(self.record.connect_failures),
            "seconds": time.perf_counter() - started,
            "handshake_s": [c.handshake_s for c in ok],
        }

    async def connect(self, client: Client) -> None:
        path = "/v1/ws/mdt" if client.kind == "mdt" else "/v1/ws/console"  # storm: console
        extra: dict[str, Any] = {}
        if self.source_ip:
            # Each worker dials from its own loopback address, so 25,000 connections
            # to one server port do not exhaust one address's ephemeral ports.
            extra["local_addr"] = (self.source_ip, 0)
        started = time.perf_counter()
        try:
            ws = await websockets.connect(
                self.url + path,
                additional_headers={"Authorization": f"Bearer {client.token}"},
                compression=self.compression,
                proxy=None,  # websockets honours *_PROXY variables, even for loopback
                open_timeout=self.open_timeout_s,
                # The server pings every 20 s and these answer; client-side pings on top
                # would double the keepalive traffic the server handles.
                ping_interval=None,
                # A console's snapshot lists every unit of the city (megabytes at 25,000).
                max_size=None,
                **extra,
            )
            # The snapshot gets the same time again: at tens of thousands of units a
            # console's snapshot costs the server a good part of a second of CPU, so
            # a window of them queues up behind each other.
            # A storm console takes it as bytes: a thousand snapshots of megabytes each,
            # decoded to text for nothing, would make this process the storm's bottleneck.
            raw = await asyncio.wait_for(
                ws.recv(decode=client.kind != "storm"), self.open_timeout_s
            )
        except (OSError, TimeoutError, websockets.WebSocketException) as err:
            self.record.connect_failures[type(err).__name__] += 1
            return
        kind = first_type(raw)
        if kind != "snapshot":
            self.record.connect_failures[f"first message {kind}"] += 1
            await ws.close()
            return
        client.handshake_s = time.perf_counter() - started
        client.ws = ws
        reader = self.read_mdt if client.kind == "mdt" else self.read_console
        self.readers.append(asyncio.create_task(reader(client, ws)))

    # ------------------------------------------------------------------ reading

    async def read_console(self, client: Client, ws: ClientConnection) -> None:
        record = self.record
        try:
            async for raw in ws:
                received = time.perf_counter()
                assert isinstance(raw, str)
                if CREATED_MARK in raw:
                    message = json.loads(raw)
                    event = message.get("event") or {}
                    if event.get("type") == "incident.created":
                        record.created.append((int(event["incident_id"]), received))
                    record.events["console:incident.created"] += 1
                else:
                    record.events["console:other"] += 1
        except websockets.ConnectionClosed:
            pass
        self.closed(client, ws)

    async def read_mdt(self, client: Client, ws: ClientConnection) -> None:
        record = self.record
        try:
            async for raw in ws:
                received = time.perf_counter()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "event":
                    event = message["event"]
                    record.events[f"mdt:{event['type']}"] += 1
                    if event["type"] == "assignment.offered" and event["unit_id"] == client.name:
                        record.offered.append((int(event["incident_id"]), client.name, received))
                        await self.take_offer(ws, int(event["data"]["assignment_id"]))
                elif kind == "ack":
                    record.acks[str(message.get("request"))] += 1
                elif kind == "error":
                    key = f"{message.get('request')}:{message.get('code')}"
                    record.errors[key] += 1
                    record.error_samples.setdefault(key, str(message.get("detail")))
        except websockets.ConnectionClosed:
            pass
        self.closed(client, ws)

    async def take_offer(self, ws: ClientConnection, assignment_id: int) -> None:
        """Accept, then (by default) report the job done so the unit serves again."""
        await ws.send(json.dumps({"type": "accept", "assignment_id": assignment_id}))
        if self.free_units:
            # One MDT's messages are handled in order, so these land after the accept.
            for status in FREE_SEQUENCE:
                await ws.send(json.dumps({"type": "status", "status": status}))

    def closed(self, client: Client, ws: ClientConnection) -> None:
        """A socket that ends before ``stop`` is a finding (4008 too slow, 1011 ping
        timeout, 1006 dropped), not noise."""
        if not self.stopping:
            self.record.closed[str(ws.close_code)] += 1
            self.record.closed_at.append((client.kind, str(ws.close_code), time.perf_counter()))

    # ------------------------------------------------------------------ pinging

    def start_pings(self) -> None:
        for client in self.clients:
            if client.kind == "mdt" and client.ws is not None:
                phase = self.rng.uniform(0, self.ping_interval_s)
                self.pingers.append(asyncio.create_task(self.ping(client, client.ws, phase)))

    async def ping(self, client: Client, ws: ClientConnection, phase: float) -> None:
        """AVL pings: a few metres of drift around the unit's place, every interval
        +-5 %, so the pings of thousands of MDTs spread out instead of coming in waves."""
        rng = random.Random(f"{client.name}:ping")
        await asyncio.sleep(phase)
        while True:
            lat = client.lat + rng.uniform(-1e-4, 1e-4)
            lon = client.lon + rng.uniform(-1e-4, 1e-4)
            message = {
                "type": "location",
                "lat": round(lat, 6),
                "lon": round(lon, 6),
                "accuracy_m": 8.0,
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            }
            try:
                await ws.send(json.dumps(message, separators=(",", ":")))
                self.record.pings_sent += 1
            except websockets.ConnectionClosed:
                self.record.ping_failures += 1
                return
            await asyncio.sleep(self.ping_interval_s * rng.uniform(0.95, 1.05))

    # ------------------------------------------------------------------ stopping

    async def stop(self, result_path: Path) -> None:
        """Write the record, then drop every socket."""
        self.stopping = True
        for task in self.pingers:
            task.cancel()
        await asyncio.gather(*self.pingers, return_exceptions=True)
        record = self.record
        result = {
            "created": record.created,
            "offered": record.offered,
            "events": dict(record.events),
            "acks": dict(record.acks),
            "errors": dict(record.errors),
            "error_samples": record.error_samples,
            "closed": dict(record.closed),
            "closed_at": record.closed_at,
            "pings_sent": record.pings_sent,
            "ping_failures": record.ping_failures,
            "connected": {
                kind: sum(1 for c in self.clients if c.kind == kind and c.ws is not None)
                for kind in ("mdt", "console", "storm")
            },
        }
        write_json(result_path, result)
        # Dropping the sockets rather than closing each one politely: a close
        # handshake per connection would take the server minutes at 25,000, and the
        # figures are already written.
        for client in self.clients:
            if client.ws is not None:
                with contextlib.suppress(Exception):
                    client.ws.transport.abort()
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    # Once, at the end, after the measurement: blocking the loop here costs nothing.
    path.write_text(json.dumps(data))


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def serve(job: dict[str, Any], result_path: Path) -> None:
    worker = Worker(job)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    say({"event": "ready", "clients": len(worker.clients)})
    while line := (await reader.readline()).decode().strip():
        command, _, arg = line.partition(" ")
        if command == "connect":
            say(await worker.connect_all(arg))
        elif command == "ping":
            worker.start_pings()
            say({"event": "pinging", "mdts": len(worker.pingers)})
        elif command == "stop":
            await worker.stop(result_path)
            say({"event": "done"})
            return
        else:
            say({"event": "error", "detail": f"unknown command {line!r}"})
    # stdin closed without "stop": bench/fanout.py is gone, so go too.


def main() -> None:
    # Every socket is a file descriptor; the default soft limit (often 1024) would
    # stop a worker long before its share of clients.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    job = json.loads(Path(sys.argv[1]).read_text())
    result_path = Path(sys.argv[2])
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(serve(job, result_path))
    else:
        # The receive times are the measurement: the faster loop adds less to them.
        uvloop.run(serve(job, result_path))


if __name__ == "__main__":
    main()

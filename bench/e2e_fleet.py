"""The full-path mode's MDT fleet, a process of its own: one websocket per unit
(``/v1/ws/mdt`` with the unit's token), crews that finish every job at once, and an
operator who closes each finished incident through the REST API.

    python bench/e2e_fleet.py --url http://127.0.0.1:8112 --credentials demo-credentials.json \\
        [--extra-units units.json] [--no-close]

For every ``assignment.offered`` of its own unit, a bot notes when it arrived
(``time.monotonic()``, comparable with the load generator's clock on Linux) and sends, without
waiting between them, ``accept``, ``status: on_scene``, ``status: available`` (the shortest
way back to duty the crew lifecycle allows; the server applies one MDT's messages in
order). When ``available`` is acknowledged the unit is free again, and the incident is
closed (``POST /v1/incidents/{id}/close``, the demo dispatcher's token) as an operator
would, so open incidents do not pile up over a run.

Commands on stdin, one per line, each answered with one JSON line on stdout: ``count``
(offers since the last mark, units busy, closes in flight), ``mark`` (everything since
the last mark, then start a new one), ``quit``. The first line out is
``{"ready": <units>}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e_common import run_loop
from e2e_http import HttpError, HttpPool

CLOSE_BODY = json.dumps({"disposition": "resolved"}).encode()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Fleet:
    """What every bot saw since the last mark (one event loop: no locking)."""

    def __init__(self, url: str, operator_token: str, close: bool) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        self._http = HttpPool(parts.hostname, parts.port, limit=64)
        self._auth = {
            "Authorization": f"Bearer {operator_token}",
            "Content-Type": "application/json",
        }
        self._close = close
        self._closing: set[asyncio.Task[None]] = set()
        self.busy: set[str] = set()
        self.reset()

    @property
    def closing(self) -> int:
        """Closes sent and not yet answered."""
        return len(self._closing)

    def reset(self) -> None:
        self.offered_at: dict[int, float] = {}
        self.offers = 0
        self.acks: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.error_samples: dict[str, str] = {}
        self.closes: Counter[str] = Counter()
        self.max_busy = len(self.busy)
        self._cpu0 = cpu_seconds()
        self._t0 = time.monotonic()

    def report(self) -> dict[str, Any]:
        return {
            "offered_at": self.offered_at,
            "offers": self.offers,
            "acks": self.acks,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "closes": self.closes,
            "max_busy": self.max_busy,
            "cpu_s": cpu_seconds() - self._cpu0,
            "wall_s": time.monotonic() - self._t0,
        }

    def offered(self, unit_id: str, incident_id: int, received: float) -> None:
        self.offers += 1
        self.offered_at.setdefault(incident_id, received)
        self.busy.add(unit_id)
        self.max_busy = max(self.max_busy, len(self.busy))

    def freed(self, unit_id: str, incident_id: int | None) -> None:
        self.busy.discard(unit_id)
        if self._close and incident_id is not None:
            task = asyncio.create_task(self._close_incident(incident_id))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_incident(self, incident_id: int) -> None:
        raw = self._http.request_bytes(
            "POST", f"/v1/incidents/{incident_id}/close", self._auth, CLOSE_BODY
        )
        try:
            answer = await self._http.send(raw)
            self.closes[str(answer.status)] += 1
        except HttpError:
            self.closes["no answer"] += 1


class Bot:
    """One unit's MDT: accepts every offer and finishes the job at once."""

    def __init__(self, unit_id: str, token: str, ws_url: str, fleet: Fleet) -> None:
        self.unit_id = unit_id
        self._token = token
        self._url = ws_url + "/v1/ws/mdt"
        self._fleet = fleet
        self._job: int | None = None
        self.ws: Any = None

    async def connect(self) -> None:
        # proxy=None: websockets otherwise honours *_PROXY variables, even for loopback.
        self.ws = await websockets.connect(
            self._url,
            additional_headers={"Authorization": f"Bearer {self._token}"},
            proxy=None,
            open_timeout=60,
            max_size=None,
        )
        first = json.loads(await self.ws.recv())
        if first.get("type") != "snapshot":
            raise RuntimeError(f"MDT {self.unit_id}: expected a snapshot first, got {first}")

    async def run(self) -> None:
        fleet = self._fleet
        async for raw in self.ws:
            received = time.monotonic()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "event":
                event = message["event"]
                if event["type"] == "assignment.offered" and event.get("unit_id") == self.unit_id:
                    incident_id = int(event["incident_id"])
                    fleet.offered(self.unit_id, incident_id, received)
                    self._job = incident_id
                    assignment_id = event["data"]["assignment_id"]
                    await self.ws.send(
                        json.dumps({"type": "accept", "assignment_id": assignment_id})
                    )
                    await self.ws.send('{"type": "status", "status": "on_scene"}')
                    await self.ws.send('{"type": "status", "status": "available"}')
            elif kind == "ack":
                request = str(message.get("request"))
                fleet.acks[request] += 1
                if request == "status" and message.get("unit", {}).get("status") == "available":
                    job, self._job = self._job, None
                    fleet.freed(self.unit_id, job)
            elif kind == "error":
                key = f"{message.get('request')}:{message.get('code')}"
                fleet.errors[key] += 1
                fleet.error_samples.setdefault(key, str(message.get("detail")))

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()


async def serve_commands(fleet: Fleet, units: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(value: Any) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    say({"ready": units})
    while line := (await reader.readline()).decode().strip():
        if line == "count":
            say(
                {
                    "offers": len(fleet.offered_at),
                    "busy": len(fleet.busy),
                    "closing": fleet.closing,
                }
            )
        elif line == "mark":
            say(fleet.report())
            fleet.reset()
        elif line == "quit":
            return


async def run(args: argparse.Namespace) -> int:
    credentials = json.loads(args.credentials.read_text())
    tokens: dict[str, str] = dict(credentials["units"])
    if args.extra_units:
        tokens.update(json.loads(args.extra_units.read_text()))
    fleet = Fleet(args.url, credentials["operators"]["dispatcher"], close=not args.no_close)
    ws_url = args.url.replace("http://", "ws://", 1)
    bots = [Bot(unit_id, token, ws_url, fleet) for unit_id, token in sorted(tokens.items())]
    gate = asyncio.Semaphore(32)  # connect in waves: each connect reads a snapshot

    async def connect(bot: Bot) -> None:
        async with gate:
            await bot.connect()

    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(connect(bot) for bot in bots))
        tasks = [asyncio.create_task(bot.run()) for bot in bots]
        commands = asyncio.create_task(serve_commands(fleet, len(bots)))
        done, _ = await asyncio.wait([commands, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if commands not in done:
            failed = next(iter(done))
            raise RuntimeError(f"an MDT connection ended: {failed.exception()!r}")
    finally:
        await asyncio.gather(*(bot.close() for bot in bots))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True)
    parser.add_argument("--credentials", type=Path, required=True)
    parser.add_argument("--extra-units", type=Path)
    parser.add_argument("--no-close", action="store_true", help="leave incidents open")
    return run_loop(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

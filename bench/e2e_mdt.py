"""MDT bots and single panic POSTs (httpx), as bench/chaos.py and bench/fanout.py use them.

The full-path mode's fleet (bench/e2e_fleet.py) drives its MDTs with the same bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from e2e_common import PANIC_PATH, signed_headers

FREE_SEQUENCE = ("on_scene", "available")


@dataclass
class MdtLog:
    """What every MDT bot saw, shared by all bots (one event loop, no locking needed)."""

    offered_at: dict[int, float] = field(default_factory=dict)
    offers: int = 0
    acks: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)
    new_offer: asyncio.Event = field(default_factory=asyncio.Event)


class MdtBot:
    """One unit's MDT: accepts every offer, then reports the job done (unit available)."""

    def __init__(self, unit_id: str, token: str, ws_url: str, log: MdtLog, free: bool) -> None:
        self.unit_id = unit_id
        self._token = token
        self._url = ws_url + "/v1/ws/mdt"
        self._log = log
        self._free = free
        self.ws: Any = None

    async def connect(self) -> None:
        # proxy=None: websockets otherwise honours *_PROXY variables, even for loopback.
        self.ws = await websockets.connect(
            self._url,
            additional_headers={"Authorization": f"Bearer {self._token}"},
            proxy=None,
            open_timeout=30,
            max_size=None,
        )
        first = json.loads(await self.ws.recv())
        if first.get("type") != "snapshot":
            raise RuntimeError(f"MDT {self.unit_id}: expected a snapshot first, got {first}")

    async def run(self) -> None:
        async for raw in self.ws:
            received = time.perf_counter()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "event":
                event = message["event"]
                if event["type"] == "assignment.offered" and event.get("unit_id") == self.unit_id:
                    await self._on_offer(event, received)
            elif kind == "ack":
                self._log.acks[str(message.get("request"))] += 1
            elif kind == "error":
                key = f"{message.get('request')}:{message.get('code')}"
                self._log.errors[key] += 1
                self._log.error_samples.setdefault(key, str(message.get("detail")))

    async def _on_offer(self, event: dict[str, Any], received: float) -> None:
        self._log.offers += 1
        self._log.offered_at.setdefault(int(event["incident_id"]), received)
        self._log.new_offer.set()
        assignment_id = event["data"]["assignment_id"]
        await self.ws.send(json.dumps({"type": "accept", "assignment_id": assignment_id}))
        if self._free:
            # The server handles one MDT's messages in order, so these land after the
            # accept without waiting for its ack. on_scene then available is the
            # shortest way back to duty the unit lifecycle allows (dispatch/lifecycle.py).
            for status in FREE_SEQUENCE:
                await self.ws.send(json.dumps({"type": "status", "status": status}))

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()


@dataclass
class PostResult:
    """One panic POST of the latency phase."""

    index: int
    sent: float
    answered: float
    http_status: int
    incident_id: int | None
    status: str | None
    error: str | None = None
    joined: bool = False  # the report joined an open incident (duplicate_of set)


async def post_panic(
    http: httpx.AsyncClient, secret: str, index: int, body: bytes, key: str
) -> PostResult:
    headers = signed_headers(secret, body, key)
    sent = time.perf_counter()
    try:
        response = await http.post(PANIC_PATH, content=body, headers=headers)
    except httpx.HTTPError as err:
        return PostResult(index, sent, time.perf_counter(), 0, None, None, repr(err))
    answered = time.perf_counter()
    if response.status_code != 202:
        return PostResult(
            index, sent, answered, response.status_code, None, None, response.text[:200]
        )
    answer = response.json()
    return PostResult(
        index,
        sent,
        answered,
        202,
        int(answer["incident_id"]),
        str(answer["status"]),
        joined=answer.get("duplicate_of") is not None,
    )

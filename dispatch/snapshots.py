"""Console snapshots shared by the consoles of one audience, built in pages.

A console's snapshot lists every unit it sees: megabytes at tens of thousands of units.
Built for each console as one blocking ``json.dumps``, a reconnect storm of a thousand
consoles would hold the event loop for minutes. Here one snapshot per audience (the
whole city, or one desk's zones) is built at a time, at most ``max_age_s`` old, and
every console of that audience connecting meanwhile is sent the same text; the units
are read and serialised ``page`` at a time, with the loop free between pages.

A shared snapshot reflects an event position P a little behind the log's end: the
session then replays the events after P (dispatch/api/ws_catchup.py), so a console
sees exactly what it would have seen from a snapshot of its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from dispatch import readmodels
from dispatch.events import format_position

# Units read and serialised between two yields to the loop (~5 ms of work each).
UNITS_PAGE = 500


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A console snapshot message as JSON text, and the event position it reflects."""

    position: int
    text: str
    built_at: float

    def with_reason(self, reason: str) -> str:
        """The same message saying why a client that asked to resume got it."""
        return f'{self.text[:-1]},"reason":{json.dumps(reason)}}}'


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


async def build(
    conn: asyncpg.Connection, zones: frozenset[str] | None, *, page: int = UNITS_PAGE
) -> Snapshot:
    """One console snapshot of ``zones`` (None: the city), read in one repeatable-read
    transaction so every part reflects the same position."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        position = await readmodels.last_position(conn)
        head: dict[str, Any] = {"type": "snapshot", "position": format_position(position)}
        head["incidents"] = await readmodels.open_incidents(conn, zones=zones)
        head["assignments"] = await readmodels.active_assignments(conn, zones=zones)
        if zones is not None:
            head["desk"] = sorted(zones)
        pages: list[str] = []
        after = ""
        while True:
            units = await readmodels.units_page(conn, zones=zones, after=after, limit=page)
            if units:
                pages.append(_dumps(units)[1:-1])
                after = units[-1]["id"]
            if len(units) < page:
                break
            await asyncio.sleep(0)  # let other sockets run between pages
    text = f'{_dumps(head)[:-1]},"units":[{",".join(pages)}]}}'
    return Snapshot(position, text, time.monotonic())


class ConsoleSnapshots:
    """The newest snapshot of each audience; one build at a time per audience."""

    def __init__(self, pool: asyncpg.Pool, *, max_age_s: float = 1.0) -> None:
        self._pool = pool
        self._max_age_s = max_age_s
        self._built: dict[frozenset[str] | None, Snapshot] = {}
        self._building: dict[frozenset[str] | None, asyncio.Task[Snapshot]] = {}
        self.builds = 0

    async def get(self, zones: frozenset[str] | None) -> Snapshot:
        """A snapshot of ``zones`` at most ``max_age_s`` old (waiting for a build in
        progress rather than starting another)."""
        kept = self._built.get(zones)
        if kept is not None and time.monotonic() - kept.built_at <= self._max_age_s:
            return kept
        task = self._building.get(zones)
        if task is None:
            task = asyncio.create_task(self._build(zones))
            self._building[zones] = task
            task.add_done_callback(lambda _t: self._building.pop(zones, None))
        # Shielded: one console leaving mid-build must not cancel the others' snapshot.
        return await asyncio.shield(task)

    async def _build(self, zones: frozenset[str] | None) -> Snapshot:
        async with self._pool.acquire() as conn:
            snapshot = await build(conn, zones)
        self.builds += 1
        self._built[zones] = snapshot
        if len(self._built) > 256:  # desks come and go: keep the newest few
            oldest = min(self._built, key=lambda z: self._built[z].built_at)
            del self._built[oldest]
        return snapshot

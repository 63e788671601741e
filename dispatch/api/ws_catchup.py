"""How a websocket client catches up before its live feed: a snapshot or a replay.

The session has subscribed to the live feed first (buffering); what is sent here sets
``last_sent``, and the live feed then skips every position at or below it, so there is
no gap and no duplicate. A console's snapshot is shared with the consoles of its
audience (dispatch/snapshots.py) and may reflect a position a little behind the log's
end: the events after it are replayed at once, before anything live.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import WebSocket

from dispatch import readmodels
from dispatch.events import format_position
from dispatch.services import Services
from dispatch.snapshots import ConsoleSnapshots

_REPLAY_PAGE = 1000


def console_snapshots(ws: WebSocket, services: Services) -> ConsoleSnapshots:
    """This app's shared console snapshots (made on first use)."""
    snapshots: ConsoleSnapshots | None = getattr(ws.app.state, "console_snapshots", None)
    if snapshots is None:
        snapshots = ConsoleSnapshots(services.pool)
        ws.app.state.console_snapshots = snapshots
    return snapshots


class CatchUp:
    """The part of a session that sends the snapshot or the replay."""

    def __init__(
        self,
        ws: WebSocket,
        services: Services,
        *,
        unit_id: str | None,
        zones: frozenset[str] | None,
    ) -> None:
        self.ws = ws
        self.services = services
        self.unit_id = unit_id
        self.zones = zones
        self.last_sent = 0
        self._send_lock = asyncio.Lock()

    async def send_snapshot(self, reason: str | None = None) -> None:
        """Current state the client is entitled to, and the position it reflects.

        ``reason`` says why a client that asked to resume got a snapshot instead.
        """
        if self.unit_id is None:
            shared = await console_snapshots(self.ws, self.services).get(self.zones)
            # The shared snapshot may be up to a second old: the events since follow it,
            # read before anything is sent, so that a connect reads everything it needs
            # from PostgreSQL first (as an unshared snapshot did).
            async with self.services.pool.acquire() as conn:
                since = await readmodels.replay(
                    conn, after=shared.position, unit_id=None, zones=self.zones, limit=_REPLAY_PAGE
                )
            text = shared.text if reason is None else shared.with_reason(reason)
            async with self._send_lock:
                await self.ws.send_text(text)
                self.last_sent = shared.position
                for event in since:
                    await self.ws.send_text(json.dumps(event.to_message(), default=str))
                    self.last_sent = event.position
            if len(since) == _REPLAY_PAGE:  # a burst bigger than a page: the rest
                await self.replay(self.last_sent, announce=False)
            return
        async with (
            self.services.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            position = await readmodels.last_position(conn)
            message: dict[str, Any] = {"type": "snapshot", "position": format_position(position)}
            if reason is not None:
                message["reason"] = reason
            message["unit"] = await readmodels.unit_view(conn, self.unit_id)
            message["assignments"] = await readmodels.active_assignments(conn, unit_id=self.unit_id)
        async with self._send_lock:
            await self.ws.send_text(json.dumps(message, separators=(",", ":"), default=str))
            self.last_sent = position

    async def replay(self, after: int, *, announce: bool = True) -> None:
        """Send every event after ``after`` from PostgreSQL, in order; ``announce``
        ends with the ``replayed`` message a client that asked to resume waits for.

        A position beyond the end of the log (a client of another deployment, or one
        whose server's database was restored from a backup) cannot be resumed: the
        client gets a fresh snapshot, with the reason.
        """
        async with self.services.pool.acquire() as conn:
            newest = await readmodels.last_position(conn)
        if after > newest:
            await self.send_snapshot(
                reason=f"position {format_position(after)} is beyond this server's event log"
                f" ({format_position(newest)}); start again from this snapshot"
            )
            return
        async with self._send_lock:
            cursor = after
            try:
                while True:
                    async with self.services.pool.acquire() as conn:
                        events = await readmodels.replay(
                            conn,
                            after=cursor,
                            unit_id=self.unit_id,
                            zones=self.zones,
                            limit=_REPLAY_PAGE,
                        )
                    for event in events:
                        await self.ws.send_text(json.dumps(event.to_message(), default=str))
                        cursor = event.position
                    if len(events) < _REPLAY_PAGE:
                        break
            finally:
                # Only what was actually sent counts (also when an outage cut the replay
                # short): an event after it still comes through the live feed.
                self.last_sent = cursor
            if announce:
                await self.ws.send_text(
                    json.dumps({"type": "replayed", "position": format_position(self.last_sent)})
                )

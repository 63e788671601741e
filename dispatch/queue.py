"""The waiting queue: incidents with no unit yet get one as soon as one is free.

Every instance runs a worker. Each sweep locks the waiting incidents it looks at with
FOR UPDATE SKIP LOCKED (so two workers never serve the same incident), reads the free
fleet once, and walks the incidents by priority then age, offering each the best unit
still unclaimed. Incidents whose offers were refused too often are left to operators.
A unit freed on this instance wakes the worker at once; units freed elsewhere are found
on the next periodic sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from dispatch.offers import Dispatcher, IncidentFacts

log = logging.getLogger(__name__)

_ACTOR = "system:queue"
_BATCH = 50


class QueueWorker:
    """Serves waiting incidents whenever units are free."""

    def __init__(self, *, pool: asyncpg.Pool, dispatcher: Dispatcher, poll_s: float) -> None:
        self._pool = pool
        self._dispatcher = dispatcher
        self._poll_s = poll_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask for a sweep now (a unit became free)."""
        self._wake.set()

    async def run(self) -> None:
        """Sweep forever; survives database outages."""
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.exception("queue sweep failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)

    async def sweep_once(self) -> int:
        """Offer waiting incidents to free units; returns how many offers were made."""
        async with self._pool.acquire() as conn, conn.transaction():
            units = await self._dispatcher.available_units(conn)
            if not units:
                return 0
            # Waiting means some agency of the plan has no unit yet, whether or not
            # other agencies' units are already on their way.
            rows = await conn.fetch(
                "SELECT id FROM incidents WHERE cardinality(unfilled) > 0"
                " AND status IN ('queued', 'offered', 'dispatched', 'on_scene')"
                " AND lat IS NOT NULL AND zone_id IS NOT NULL ORDER BY priority, created_at, id"
                f" LIMIT {_BATCH} FOR UPDATE SKIP LOCKED"
            )
            offers = 0
            for row in rows:
                facts: IncidentFacts | None = await self._dispatcher.load_facts(conn, row["id"])
                if facts is None:
                    continue
                if await self._dispatcher.failed_offers(conn, row["id"]) >= (
                    self._dispatcher.max_offers
                ):
                    continue  # escalated: operators decide who goes, not the queue
                made, _missing = await self._dispatcher.fill(conn, facts, actor=_ACTOR, units=units)
                offers += len(made)
                claimed = {offer.unit_id for offer in made}
                units = [u for u in units if u.id not in claimed]
                if not units:
                    break
            return offers

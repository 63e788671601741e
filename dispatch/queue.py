"""The waiting queue: incidents with no unit yet get one as soon as one is free.

Every instance runs a worker. Each sweep locks the waiting incidents it looks at with
FOR UPDATE SKIP LOCKED (so two workers never serve the same incident), reading them and
the free fleet once; the core (dispatch.core.queue) walks them by priority then age and
proposes each the best units still unproposed; this claims and offers. Incidents whose
offers were refused too often are left to operators.
A unit freed on this instance wakes the worker at once; units freed elsewhere are found
on the next periodic sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg

from dispatch import incident_log
from dispatch.core.facts import IncidentFacts
from dispatch.core.queue import Waiting, sweep
from dispatch.metrics import Every
from dispatch.offers import Dispatcher
from dispatch.transient import OutageLog
from geo.points import GeoPoint

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
        self._length_due = Every(1.0)
        self._outage = OutageLog(log, "queue worker")

    def wake(self) -> None:
        """Ask for a sweep now (a unit became free)."""
        self._wake.set()

    async def run(self) -> None:
        """Sweep forever; survives database outages."""
        while True:
            try:
                await self.sweep_once()
                self._outage.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._outage.failed(err)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # lands as the event is set, and the loop then outlives its shutdown.
                async with asyncio.timeout(self._poll_s):
                    await self._wake.wait()

    async def sweep_once(self) -> int:
        """Offer waiting incidents to free units; returns how many offers were made."""
        offers = await self._sweep()
        # The gauge at most once a second: every freed unit wakes a sweep.
        if self._dispatcher.metrics is not None and self._length_due.due():
            waiting = await self._pool.fetchval(
                "SELECT count(*) FROM incidents WHERE cardinality(unfilled) > 0"
                " AND status NOT IN ('closed', 'merged')"
            )
            self._dispatcher.metrics.queue_length.set(waiting)
        return offers

    async def _sweep(self) -> int:
        # Usually nothing waits: say so from the partial index, in one statement outside
        # any transaction, before reading the whole free fleet (which a large fleet makes
        # the costly part). Something that starts waiting meanwhile is the next sweep's.
        waiting = await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM incidents WHERE cardinality(unfilled) > 0"
            " AND status NOT IN ('closed', 'merged'))"
        )
        if not waiting:
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            units = await self._dispatcher.available_units(conn, stale=True)
            if not units:
                return 0
            # Waiting means some agency of the plan has no unit yet, whether or not
            # other agencies' units are already on their way. The query narrows the
            # queue to what a free unit could serve and operators were not left to
            # decide (the core's worth_serving), so others cannot crowd the batch out;
            # it reads each incident's facts, open slots and refusals in one round trip.
            agencies = sorted({u.agency for u in units})
            rows = await conn.fetch(
                "SELECT i.id, i.type, i.lat, i.lon, i.zone_id, i.unfilled,"
                " extract(epoch FROM now() - i.created_at)::float8 AS waited,"
                " ARRAY(SELECT a.unit_id FROM assignments a WHERE a.incident_id = i.id"
                " AND a.status IN ('declined', 'expired', 'cancelled')) AS refused,"
                " (SELECT count(*) FROM assignments a WHERE a.incident_id = i.id"
                " AND a.status IN ('declined', 'expired')) AS failed"
                " FROM incidents i WHERE cardinality(i.unfilled) > 0"
                " AND i.unfilled && $1::text[]"
                " AND i.status IN ('queued', 'offered', 'dispatched', 'on_scene')"
                " AND i.lat IS NOT NULL AND i.zone_id IS NOT NULL"
                " AND (SELECT count(*) FROM assignments a WHERE a.incident_id = i.id"
                " AND a.status IN ('declined', 'expired')) < $2"
                f" ORDER BY i.priority, i.created_at, i.id LIMIT {_BATCH}"
                " FOR UPDATE OF i SKIP LOCKED",
                agencies,
                self._dispatcher.max_offers,
            )
            dispatcher = self._dispatcher
            waiting_now = [
                Waiting(
                    facts=IncidentFacts(
                        r["id"],
                        dispatcher.incident_type(r["type"]),
                        GeoPoint(lat=r["lat"], lon=r["lon"]),
                        r["zone_id"],
                        r["waited"],
                    ),
                    unfilled=tuple(r["unfilled"]),
                    refused=frozenset(r["refused"]),
                    neighbour_zone_ids=dispatcher.neighbour_zones(r["zone_id"]),
                    failed_offers=r["failed"],
                )
                for r in rows
            ]
            plans = sweep(
                waiting_now,
                units,
                dispatcher.policy,
                dispatcher.travel,
                dispatcher.rules,
                now=time.time(),
            )
            offers = 0
            for snapshot, decision in plans:
                filled = await dispatcher.apply(conn, snapshot, decision, actor=_ACTOR)
                verdict = filled.verdict
                if verdict.escalate_reason is not None:
                    # E.g. a hold that ended with no unit left to take: operators are
                    # told (once per reason; already-escalated incidents stay quiet).
                    await incident_log.escalate(
                        conn,
                        dispatcher.schema,
                        snapshot.incident.id,
                        actor=_ACTOR,
                        reason=verdict.escalate_reason,
                    )
                offers += len(filled.offers)
            return offers

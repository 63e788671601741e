"""Offer expiry, driven from PostgreSQL so it survives the crash of any instance.

Every instance runs a sweeper. Due offers are claimed with FOR UPDATE SKIP LOCKED, so
two sweepers never expire the same offer, and an MDT's accept racing the sweeper waits
for the row lock and then finds the offer already expired (or the reverse).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from dispatch import incident_log
from dispatch.core.lifecycle import expire_offer
from dispatch.events import EventType, NewEvent, append_events
from dispatch.offers import Dispatcher
from dispatch.transient import OutageLog

log = logging.getLogger(__name__)

_ACTOR = "system:offer-expiry"


class OfferExpiry:
    """Expires offers past their deadline and offers the incident to the next unit."""

    def __init__(
        self, *, pool: asyncpg.Pool, schema: str, dispatcher: Dispatcher, poll_s: float
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._dispatcher = dispatcher
        self._poll_s = poll_s
        self._outage = OutageLog(log, "offer expiry")

    async def run(self) -> None:
        """Sweep forever; survives database outages."""
        while True:
            try:
                while await self.sweep_once():
                    pass
                self._outage.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._outage.failed(err)
            await asyncio.sleep(self._poll_s)

    async def sweep_once(self) -> int:
        """Expire one due offer, in its own transaction; returns how many (0 or 1)."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, incident_id, unit_id, agency, status, expires_at <= now() AS late"
                " FROM assignments WHERE status = 'offered' AND expires_at <= now()"
                " ORDER BY expires_at LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
            if row is None:
                return 0
            answer = expire_offer(row["status"], late=row["late"])
            if answer is None:
                return 0
            await conn.execute(
                "UPDATE assignments SET status = $2, responded_at = now() WHERE id = $1",
                row["id"],
                answer.assignment_status,
            )
            if self._dispatcher.metrics is not None:
                self._dispatcher.metrics.offer_expiries.inc()
            log.warning(
                "offer expired unanswered",
                extra={
                    "incident_id": row["incident_id"],
                    "unit_id": row["unit_id"],
                    "assignment_id": row["id"],
                },
            )
            await conn.execute(
                "UPDATE units SET status = $2, updated_at = now()"
                " WHERE id = $1 AND status = 'offered'",
                row["unit_id"],
                answer.unit_status,
            )
            await append_events(
                conn,
                self._schema,
                [
                    NewEvent(
                        EventType.ASSIGNMENT_EXPIRED,
                        _ACTOR,
                        row["incident_id"],
                        row["unit_id"],
                        {"assignment_id": row["id"]},
                    ),
                    incident_log.unit_status_change(
                        row["unit_id"],
                        "offered",
                        answer.unit_status,
                        _ACTOR,
                        assignment_id=row["id"],
                        incident_id=row["incident_id"],
                    ),
                ],
            )
            await incident_log.reopen(conn, row["incident_id"], row["agency"])
            if answer.reoffer:
                await self._dispatcher.reoffer(conn, row["incident_id"], actor=_ACTOR)
            return 1

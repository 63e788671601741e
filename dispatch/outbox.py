"""Outbox relay: committed events -> positions -> the Redis stream.

One relay at a time holds a session-level advisory lock (every instance runs one, the
others stand by). The leader gives unpositioned events their positions in id order in
one short transaction and commits; because only the leader assigns positions, and it
assigns them only to committed rows, positions grow in the order events became visible,
so a client that resumes after position P can never skip an event that committed late
with a smaller id. Then the leader XADDs each event with the stream id ``<position>-0``
and marks it published. A crash between the commit and the XADD leaves rows positioned
but unpublished; the next leader publishes them first, so an event is delayed, never
lost. Redis refuses a stream id that is not above the last one, which turns a replayed
XADD after a crash into a harmless no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from dispatch.events import EVENT_COLUMNS, Event, notify_channel
from dispatch.keys import RedisKeys
from dispatch.metrics import Every, Metrics
from dispatch.transient import OutageLog
from dispatch.unit_index import UnitIndex

log = logging.getLogger(__name__)

_BATCH = 500
_PLACED_COLUMNS = ", ".join(f"e.{column.strip()}" for column in EVENT_COLUMNS.split(","))
# How often the backlog gauge is measured (it is scraped every few seconds at most).
_LAG_EVERY_S = 1.0


def event_to_fields(event: Event) -> dict[str, str]:
    """The stream entry for an event."""
    return {"e": json.dumps(event.to_message(), separators=(",", ":"))}


def message_from_fields(fields: dict[Any, Any]) -> dict[str, Any]:
    """The websocket message stored in a stream entry."""
    raw = fields.get(b"e") or fields.get("e")
    if raw is None:
        raise ValueError("stream entry has no 'e' field")
    message: dict[str, Any] = json.loads(raw)
    return message


class OutboxRelay:
    """Publishes committed events to Redis; run `run()` as a background task."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        schema: str,
        keys: RedisKeys,
        poll_s: float,
        stream_maxlen: int,
        unit_index: UnitIndex | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._schema = schema
        self._keys = keys
        self._poll_s = poll_s
        self._maxlen = stream_maxlen
        self._unit_index = unit_index
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._floor = 0
        self._lag_due = Every(_LAG_EVERY_S)
        self.is_leader = False
        self._outage = OutageLog(log, "outbox relay")

    async def run(self) -> None:
        """Lead or stand by, forever; survives database and Redis outages."""
        while True:
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                # A Redis failure ends the lead too: the next one rebuilds the unit index
                # from PostgreSQL, in case a restarted Redis lost it.
                self._outage.failed(err)
            self.is_leader = False
            await asyncio.sleep(self._poll_s)

    async def _lead(self) -> None:
        async with self._pool.acquire() as conn:
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1))", f"relay:{self._schema}"
            )
            if not got:
                # Standing by proves PostgreSQL answers, not Redis: a Redis outage that
                # ended this instance's lead is over only once Redis answers too.
                self._outage.succeeded(proves=("postgres",))
                if self._outage.in_outage:
                    with contextlib.suppress(Exception):
                        await self._redis.ping()
                        self._outage.succeeded()
                return
            channel = notify_channel(self._schema)
            # Everything after the lock is inside the try: a Redis outage that fails the
            # rebuild below must still remove the listener and give the lock back.
            try:
                await conn.add_listener(channel, self._on_notify)
                if self._unit_index is not None:
                    # Whatever the previous leader did or missed, start from the truth.
                    await self._unit_index.rebuild(conn)
                self._floor = await self._stream_top()
                self.is_leader = True
                while True:
                    # Cleared before the pass, not after: a NOTIFY that arrives while
                    # relaying must wake the next pass at once.
                    self._wake.clear()
                    published = await self.relay_once(conn)
                    self._outage.succeeded()
                    if published < _BATCH:
                        with contextlib.suppress(TimeoutError):
                            # asyncio.timeout, not wait_for: on 3.11 wait_for can
                            # swallow a cancel that lands as the event is set, and the
                            # loop then outlives its shutdown.
                            async with asyncio.timeout(self._poll_s):
                                await self._wake.wait()
            finally:
                self.is_leader = False
                try:
                    await conn.remove_listener(channel, self._on_notify)
                    await conn.execute(
                        "SELECT pg_advisory_unlock(hashtext($1))", f"relay:{self._schema}"
                    )
                except Exception:
                    # The connection broke under us (a PostgreSQL restart): closed, it
                    # goes back to the pool as dead, not as a connection still holding
                    # a listener and the lock (asyncpg warns on that release). The pool
                    # may have taken it back already, and then refuses even this.
                    with contextlib.suppress(Exception):
                        conn.terminate()

    async def _stream_top(self) -> int:
        """The highest position ever published to the stream (0 if none).

        Positions continue above it even if PostgreSQL lost its newest events (a restore,
        a failover to a lagging replica): reusing a position that clients have already
        seen would make them skip the new event on resume.
        """
        try:
            info: dict[Any, Any] = await self._redis.xinfo_stream(self._keys.events)
        except ResponseError:
            return 0  # no stream yet
        last = info.get("last-generated-id") or info.get(b"last-generated-id") or b"0-0"
        text = last.decode() if isinstance(last, bytes) else str(last)
        return int(text.split("-")[0])

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    async def relay_once(self, conn: asyncpg.Connection) -> int:
        """Position and publish one batch; returns how many events were published."""
        # Only the leader runs this, so max(position) + n cannot collide; the unique
        # index on position is the backstop if that ever stops being true. One round
        # trip positions the new events and reads what is to publish: the ones just
        # positioned (from RETURNING) and any positioned earlier but not published (a
        # pass that failed after positioning), which the statement's snapshot shows.
        rows = await conn.fetch(
            "WITH batch AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM events"
            f" WHERE position IS NULL ORDER BY id LIMIT {_BATCH}),"
            " top AS (SELECT greatest(coalesce(max(position), 0), $1) AS p FROM events),"
            " placed AS (UPDATE events e SET position = top.p + batch.n FROM batch, top"
            f" WHERE e.id = batch.id RETURNING {_PLACED_COLUMNS})"
            f" SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events"
            " WHERE position IS NOT NULL AND NOT published UNION ALL SELECT * FROM placed)"
            f" AS pending ORDER BY position LIMIT {_BATCH}",
            self._floor,
        )
        if not rows:
            await self._observe_lag(conn)
            return 0
        events = [Event.from_record(r) for r in rows]
        # MULTI/EXEC, not a bare pipeline: Redis serves a blocked XREAD after each
        # command, so a bare pipeline hands the hubs a batch's first event alone and
        # the rest on their next read; in one EXEC they read the batch whole, and each
        # socket gets the burst in one write (dispatch/api/ws_writer.py).
        pipe = self._redis.pipeline(transaction=True)
        for event in events:
            pipe.xadd(
                self._keys.events,
                event_to_fields(event),  # type: ignore[arg-type]
                id=f"{event.position}-0",
                maxlen=self._maxlen,
                approximate=True,
            )
        results = await pipe.execute(raise_on_error=False)
        for result in results:
            # "equal or smaller than the target stream top item": published before a crash.
            if isinstance(result, Exception) and not (
                isinstance(result, ResponseError) and "equal or smaller" in str(result)
            ):
                raise result
        await conn.execute(
            "UPDATE events SET published = true WHERE position = ANY($1::bigint[])",
            [e.position for e in events],
        )
        if self._unit_index is not None:
            await self._unit_index.apply(conn, (e.to_message()["event"] for e in events))
        await self._observe_lag(conn)
        return len(events)

    async def _observe_lag(self, conn: asyncpg.Connection) -> None:
        """Set the backlog gauge, at most once a second: a pass runs for every
        transaction that appends events, and the count was a fifth of its statements."""
        if self._metrics is None or not self._lag_due.due():
            return
        # Two counts that each match a partial index: a plain "NOT published" would scan
        # the whole event log.
        self._metrics.outbox_lag.set(
            await conn.fetchval(
                "SELECT (SELECT count(*) FROM events WHERE position IS NULL)"
                " + (SELECT count(*) FROM events WHERE position IS NOT NULL AND NOT published)"
            )
        )

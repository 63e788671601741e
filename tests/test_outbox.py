"""Invariants 3 and 4: the relay positions events in commit order and loses none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
import redis.asyncio as aioredis

from dispatch.db import create_pool, migrate
from dispatch.events import EventType, append_event
from dispatch.keys import RedisKeys
from dispatch.metrics import Metrics
from dispatch.outbox import OutboxRelay, message_from_fields
from dispatch.settings import Settings


@dataclass
class Rig:
    """A migrated schema, a Redis client and a relay over them (no leader loop)."""

    schema: str
    pool: asyncpg.Pool
    redis: aioredis.Redis
    keys: RedisKeys
    relay: OutboxRelay


@pytest.fixture
async def rig(settings: Settings) -> AsyncIterator[Rig]:
    assert settings.database_url
    assert settings.redis_url
    schema = settings.db_schema
    pool = await create_pool(settings.database_url, schema, min_size=3, max_size=3)
    redis = aioredis.from_url(settings.redis_url)
    keys = RedisKeys(settings.redis_prefix)
    relay = OutboxRelay(
        pool=pool, redis=redis, schema=schema, keys=keys, poll_s=0.1, stream_maxlen=1000
    )
    async with pool.acquire() as conn:
        await migrate(conn, schema)
    try:
        yield Rig(schema, pool, redis, keys, relay)
    finally:
        await redis.aclose()
        await pool.close()


async def test_late_commit_with_smaller_id_gets_a_later_position(rig: Rig) -> None:
    """An event committed after a newer one is positioned after it, so resume misses none."""
    pool, schema, relay = rig.pool, rig.schema, rig.relay
    slow = await pool.acquire()
    slow_tx = slow.transaction()
    await slow_tx.start()
    early_id = await append_event(slow, schema, EventType.INCIDENT_CREATED, actor="slow")
    async with pool.acquire() as fast, fast.transaction():
        late_id = await append_event(fast, schema, EventType.INCIDENT_CREATED, actor="fast")
    assert early_id < late_id

    async with pool.acquire() as conn:
        assert await relay.relay_once(conn) == 1
        await slow_tx.commit()
        await pool.release(slow)
        assert await relay.relay_once(conn) == 1
        assert await relay.relay_once(conn) == 0
        rows = await conn.fetch("SELECT id, position, published FROM events ORDER BY position")
    assert [r["id"] for r in rows] == [late_id, early_id]
    assert all(r["published"] for r in rows)

    entries = await rig.redis.xrange(rig.keys.events)
    assert [e[0] for e in entries] == [b"1-0", b"2-0"]
    assert [message_from_fields(e[1])["event"]["id"] for e in entries] == [late_id, early_id]


async def test_crash_between_commit_and_publish_delays_but_never_drops(rig: Rig) -> None:
    """Positioned-but-unpublished events (a relay that died mid-way) are published next."""
    schema, relay = rig.schema, rig.relay
    async with rig.pool.acquire() as conn:
        async with conn.transaction():
            await append_event(conn, schema, EventType.INCIDENT_CREATED, actor="a")
            await append_event(conn, schema, EventType.INCIDENT_QUEUED, actor="a")
        assert await relay.relay_once(conn) == 2
        # A relay that positioned event 3 and XADDed it, then died before marking it
        # published: the next relay's XADD of it again must be harmless.
        await append_event(conn, schema, EventType.INCIDENT_ESCALATED, actor="a")
        await conn.execute("UPDATE events SET position = 3 WHERE position IS NULL")
        await rig.redis.xadd(rig.keys.events, {"e": "{}"}, id="3-0")
        assert await relay.relay_once(conn) == 1
        unpublished = await conn.fetchval("SELECT count(*) FROM events WHERE NOT published")
        assert unpublished == 0
    entries = await rig.redis.xrange(rig.keys.events)
    assert [e[0] for e in entries] == [b"1-0", b"2-0", b"3-0"]


async def test_a_pass_publishes_earlier_and_new_events_in_position_order(rig: Rig) -> None:
    """Events positioned by a relay that died before publishing them, in an order that is
    not their ids' (a late commit), and new ones: one pass publishes all of them, in
    position order (Redis refuses a stream id below the last one, and the relay takes
    that refusal for an event published already: out of order, events would be lost)."""
    schema, relay = rig.schema, rig.relay
    async with rig.pool.acquire() as conn:
        ids = [
            await append_event(conn, schema, EventType.INCIDENT_CREATED, actor=f"a{n}")
            for n in range(3)
        ]
        for event_id, position in zip(ids, (3, 1, 2), strict=True):
            await conn.execute("UPDATE events SET position = $2 WHERE id = $1", event_id, position)
        new = await append_event(conn, schema, EventType.INCIDENT_CREATED, actor="new")
        assert await relay.relay_once(conn) == 4
        assert await conn.fetchval("SELECT count(*) FROM events WHERE NOT published") == 0
    entries = await rig.redis.xrange(rig.keys.events)
    assert [e[0] for e in entries] == [b"1-0", b"2-0", b"3-0", b"4-0"]
    published = [message_from_fields(e[1])["event"]["id"] for e in entries]
    assert published == [ids[1], ids[2], ids[0], new]


async def test_positions_continue_above_the_stream_after_the_database_lost_events(
    rig: Rig,
) -> None:
    """After a restore or failover that lost the newest events, new events get positions
    above everything clients may have seen, never one of those again."""
    relay = rig.relay
    # Clients saw up to position 7 before the database went back in time.
    await rig.redis.xadd(rig.keys.events, {"e": "{}"}, id="7-0")
    relay._floor = await relay._stream_top()
    async with rig.pool.acquire() as conn:
        async with conn.transaction():
            await append_event(conn, rig.schema, EventType.INCIDENT_CREATED, actor="a")
        assert await relay.relay_once(conn) == 1
        position = await conn.fetchval("SELECT position FROM events")
    assert position == 8
    entries = await rig.redis.xrange(rig.keys.events)
    assert [e[0] for e in entries] == [b"7-0", b"8-0"]


async def test_the_backlog_gauge_counts_what_is_not_published_yet_once_a_second(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass measures the backlog, but not more than once a second: every transaction
    that appends events wakes a pass."""
    clock = [100.0]
    monkeypatch.setattr("dispatch.metrics.time.monotonic", lambda: clock[0])
    metrics = Metrics()
    relay = OutboxRelay(
        pool=rig.pool,
        redis=rig.redis,
        schema=rig.schema,
        keys=rig.keys,
        poll_s=0.1,
        stream_maxlen=1000,
        metrics=metrics,
    )

    def lag() -> float | None:
        return metrics.registry.get_sample_value("erss_outbox_lag_events")

    async with rig.pool.acquire() as conn:
        # A transaction still open holds one event back; the relay publishes the other.
        held = await rig.pool.acquire()
        held_tx = held.transaction()
        await held_tx.start()
        await append_event(held, rig.schema, EventType.INCIDENT_CREATED, actor="held")
        await append_event(conn, rig.schema, EventType.INCIDENT_CREATED, actor="a")
        assert await relay.relay_once(conn) == 1
        assert lag() == 0
        await held_tx.commit()
        await rig.pool.release(held)
        await append_event(conn, rig.schema, EventType.INCIDENT_QUEUED, actor="b")
        # Half a second later: not measured again (two events wait, the gauge says 0).
        clock[0] += 0.5
        await relay._observe_lag(conn)
        assert lag() == 0
        clock[0] += 0.6
        await relay._observe_lag(conn)
        assert lag() == 2
        clock[0] += 1.1
        assert await relay.relay_once(conn) == 2
        assert lag() == 0

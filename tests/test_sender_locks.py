"""The idempotency reservation and the senders' locks in one statement
(dispatch/incident_rows.reserve_delivery): a first delivery takes its senders' locks in
key order, a replay takes none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from dispatch.db import create_pool, migrate
from dispatch.idempotency import complete
from dispatch.incident_rows import reserve_delivery
from dispatch.reports import IncidentReport, IntakeResult
from dispatch.settings import Settings
from tests.conftest import wait_for

# Out of key order on purpose: the locks are taken sorted ("device:..." < "tel:...").
REPORT = IncidentReport(
    channel="panic",
    gateway_id="panic",
    external_id="t-1",
    sender="d-1",
    incident_type="panic",
    location=None,
    payload={},
    sender_keys=("tel:5550001", "device:d-1"),
)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    assert settings.database_url
    pool = await create_pool(settings.database_url, settings.db_schema, min_size=3, max_size=3)
    async with pool.acquire() as conn:
        await migrate(conn, settings.db_schema)
    try:
        yield pool
    finally:
        await pool.close()


async def _locks(conn: asyncpg.Connection, pid: int) -> dict[int, bool]:
    """The advisory locks backend ``pid`` holds (True) or waits for (False), by key."""
    rows = await conn.fetch(
        "SELECT (classid::bigint << 32) | objid::bigint AS key, granted FROM pg_locks"
        " WHERE locktype = 'advisory' AND pid = $1",
        pid,
    )
    return {r["key"]: r["granted"] for r in rows}


async def test_a_first_delivery_takes_its_senders_locks_in_key_order(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    schema = settings.db_schema
    first, last = [
        await pool.fetchval("SELECT hashtext($1)::bigint", f"{schema}:{key}")
        for key in ("device:d-1", "tel:5550001")
    ]
    async with pool.acquire() as other, pool.acquire() as conn, conn.transaction():
        # Another report of the sender holds the later key: the delivery must wait for
        # it holding the earlier one (the order every report takes them in), not the
        # other way round (two reports sharing keys would deadlock).
        other_tx = other.transaction()
        await other_tx.start()
        await other.execute("SELECT pg_advisory_xact_lock($1)", last)
        pid = conn.get_server_pid()
        reserving = asyncio.create_task(
            reserve_delivery(conn, REPORT, "k-1", "sha", lock_senders_of=schema)
        )

        async def waiting() -> bool:
            return await _locks(other, pid) == {first: True, last: False}

        try:
            await wait_for(
                waiting, what="the delivery waiting for the later key, holding the first"
            )
        finally:
            await other_tx.rollback()
            earlier = await reserving
        assert earlier is None
        assert await _locks(other, pid) == {first: True, last: True}


async def test_a_replay_takes_no_sender_lock(pool: asyncpg.Pool, settings: Settings) -> None:
    schema = settings.db_schema
    answer = IntakeResult(7, 8, "new")
    async with pool.acquire() as conn:
        async with conn.transaction():
            assert (
                await reserve_delivery(conn, REPORT, "k-1", "sha", lock_senders_of=schema) is None
            )
            await complete(conn, gateway_id="panic", key="k-1", response=answer.to_json())
        async with conn.transaction():
            again = await reserve_delivery(conn, REPORT, "k-1", "sha", lock_senders_of=schema)
            assert again == answer
            assert await _locks(conn, conn.get_server_pid()) == {}

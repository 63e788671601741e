"""The migration runner: versions applied once, even by instances starting together."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from dispatch.db import create_pool, load_migrations, migrate
from dispatch.settings import Settings


async def test_two_instances_migrating_at_once_apply_each_version_once(
    settings: Settings,
) -> None:
    assert settings.database_url
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(versions)
    assert versions
    conns = [await asyncpg.connect(settings.database_url) for _ in range(2)]
    try:
        applied = await asyncio.gather(*(migrate(c, settings.db_schema) for c in conns))
        assert sorted(applied, key=len) == [[], versions]
        assert await migrate(conns[0], settings.db_schema) == []
        rows = await conns[0].fetch(
            f'SELECT version FROM "{settings.db_schema}".schema_migrations ORDER BY version'
        )
        assert [r["version"] for r in rows] == versions
    finally:
        for conn in conns:
            await conn.close()


async def test_event_log_refuses_updates_and_deletes(settings: Settings) -> None:
    """Invariant 3: the audit trail is append-only, enforced by the database itself."""
    assert settings.database_url
    pool = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, settings.db_schema)
            event_id = await conn.fetchval(
                "INSERT INTO events (type, actor, data) VALUES ('x', 'test', '{}') RETURNING id"
            )
            for statement in (
                "UPDATE events SET data = '{\"forged\": true}' WHERE id = $1",
                "DELETE FROM events WHERE id = $1",
            ):
                with pytest.raises(asyncpg.RaiseError, match="append-only"):
                    await conn.execute(statement, event_id)
            # The relay's own update is allowed exactly once.
            await conn.execute("UPDATE events SET position = 1 WHERE id = $1", event_id)
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute("UPDATE events SET position = 2 WHERE id = $1", event_id)
    finally:
        await pool.close()

"""PostgreSQL access: the asyncpg pool and the schema migrations.

Migrations are plain SQL files in ``dispatch/migrations`` named ``NNNN_name.sql``,
applied in order inside one transaction under an advisory lock, so several instances
starting together never apply one twice. No migration library drives asyncpg without
bringing SQLAlchemy or a second driver along; the runner is small and tested.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg

from dispatch.errors import ConfigurationError

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema version."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    found: list[Migration] = []
    for entry in resources.files("dispatch.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigurationError(f"two migrations share a version number: {versions}")
    return found


async def migrate(conn: asyncpg.Connection, schema: str) -> list[int]:
    """Bring ``schema`` up to the newest version; returns the versions applied now."""
    applied_now: list[int] = []
    async with conn.transaction():
        # hashtext gives a stable lock key per schema; two instances block here, and the
        # second one then finds nothing left to apply.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in load_migrations():
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied_now.append(migration.version)
    return applied_now


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _give_back(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool: nothing more than asyncpg
    always does (roll back an open transaction, drop its listeners).

    asyncpg's default also sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: a round trip per acquire, 13 of the 108 statements an
    offered panic costs. The rule that makes it unnecessary: code on pooled connections
    keeps session state to its transaction (``SET LOCAL``, transaction-level advisory
    locks, no ``WITH HOLD`` cursors), and what holds more gives it back itself (the
    relay's leader lock and listener, released or the connection terminated: see
    ``OutboxRelay._lead``).
    """


async def create_pool(dsn: str, schema: str, **kwargs: Any) -> asyncpg.Pool:
    """A pool whose connections use ``schema`` and decode JSON columns to Python."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        server_settings={"search_path": schema, "application_name": "erss"},
        init=_init_connection,
        reset=_give_back,
        **kwargs,
    )
    return pool

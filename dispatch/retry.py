"""Running a transaction again when PostgreSQL aborted it for a deadlock or a
serialization failure: the database undid all of it, so a rerun is safe."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

T = TypeVar("T")

RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


async def in_transaction(
    pool: asyncpg.Pool, action: Callable[[asyncpg.Connection], Awaitable[T]], *, attempts: int = 3
) -> T:
    """Run ``action`` in a transaction, again if PostgreSQL aborted it as retryable."""
    for attempt in range(attempts):
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await action(conn)
        except RETRYABLE:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover

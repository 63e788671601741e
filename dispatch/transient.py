"""Which failures are outages (retry later) and which are bugs or bad content.

A 112 report must never be refused for a bug: the API answers 503 with Retry-After only
for the failures listed here (PostgreSQL or Redis unreachable, restarting, out of
connections), because the gateway's retry will then succeed. Anything else is handled
as a non-transient failure (intake keeps the report as an unprocessable one).
"""

from __future__ import annotations

import asyncpg
from redis import exceptions as redis_errors

# SQLSTATE classes that mean the server, not the statement, is the problem: 08
# connection exception, 53 insufficient resources, 57 operator intervention (admin
# shutdown, crash shutdown, cannot connect now), 58 system error.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "58")

_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,  # includes ConnectionRefusedError, ConnectionResetError
    TimeoutError,  # asyncio.TimeoutError is this class since 3.11
    asyncpg.InterfaceError,  # "connection is closed", "pool is closing" (not ValueError)
    asyncpg.InternalClientError,  # a connection lost half-way through a protocol step
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
)


def is_transient(err: BaseException) -> bool:
    """True when ``err`` (or what caused it) is an outage that a retry can get past."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # asyncpg's argument-encoding DataError is an InterfaceError and a ValueError:
        # content, not an outage.
        if isinstance(current, _TRANSIENT_TYPES) and not isinstance(current, ValueError):
            return True
        if isinstance(current, OSError) and not isinstance(current, FileNotFoundError):
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if (
            isinstance(current, asyncpg.PostgresError)
            and isinstance(sqlstate, str)
            and sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
        ):
            return True
        # Only an explicit cause: a bug raised while handling an outage is still a bug.
        current = current.__cause__
    return False

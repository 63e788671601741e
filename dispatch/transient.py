"""Which failures are outages (retry later) and which are bugs or bad content.

A 112 report must never be refused for a bug: the API answers 503 with Retry-After only
for the failures listed here (PostgreSQL or Redis unreachable, restarting, out of
connections), because the gateway's retry will then succeed. Anything else is handled
as a non-transient failure (intake keeps the report as an unprocessable one).
"""

from __future__ import annotations

import logging
import time

import asyncpg
from redis import exceptions as redis_errors

# SQLSTATE classes that mean the server, not the statement, is the problem: 08
# connection exception, 53 insufficient resources, 57 operator intervention (admin
# shutdown, crash shutdown, cannot connect now), 58 system error.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "58")
# And single states: a deadlock or serialization failure still there after the retries
# (40P01, 40001: the same request later will pass), and a database that failed over to a
# read-only replica (25006), as Redis's ReadOnlyError below.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "25006"})
# asyncpg raises InterfaceError for a lost connection and for mistakes in our own use of
# it ("the server expects 2 arguments", "another operation is in progress"): only the
# first is an outage; the others would be answered 503 on every retry.
# "released back to the pool": the pool took back a connection that broke mid-query
# while a task still held it (seen in the relay during a PostgreSQL restart).
_LOST_CONNECTION = (
    "connection is closed",
    "connection was closed",
    "pool is closing",
    "released back to the pool",
)
# OSErrors of the file system are bugs or configuration, not a store that went away.
_LOCAL_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)

_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,  # includes ConnectionRefusedError, ConnectionResetError
    TimeoutError,  # asyncio.TimeoutError is this class since 3.11
    asyncpg.InternalClientError,  # a connection lost half-way through a protocol step
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,  # a replica promoted by failover is still read-only
)


def is_transient(err: BaseException) -> bool:
    """True when ``err`` (or what caused it) is an outage that a retry can get past."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BaseExceptionGroup):
            # A task group's failures: an outage only if every one of them is.
            return all(is_transient(inner) for inner in current.exceptions)
        # asyncpg's argument-encoding DataError is an InterfaceError and a ValueError:
        # content, not an outage.
        if isinstance(current, _TRANSIENT_TYPES) and not isinstance(current, ValueError):
            return True
        if isinstance(current, OSError) and not isinstance(current, _LOCAL_OS_ERRORS):
            return True
        if isinstance(current, asyncpg.InterfaceError) and not isinstance(current, ValueError):
            return any(words in str(current) for words in _LOST_CONNECTION)
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and isinstance(current, asyncpg.PostgresError):
            return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES
        # Only an explicit cause: a bug raised while handling an outage is still a bug.
        current = current.__cause__
    return False


def store_of(err: BaseException) -> str:
    """Which store an outage error came from: "redis" or "postgres"."""
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, redis_errors.RedisError):
            return "redis"
        current = current.__cause__
    return "postgres"


class OutageLog:
    """Logs a background task's outage once when it begins and once when it ends.

    A task that polls every second would otherwise write a traceback a second for as
    long as a store is down, burying the one line a person needs: what is down since
    when, and when it came back. Failures that are not outages are bugs and are logged
    in full every time.
    """

    def __init__(self, log: logging.Logger, task: str) -> None:
        self._log = log
        self._task = task
        self._since: float | None = None
        self._store = ""
        self.failures = 0

    @property
    def in_outage(self) -> bool:
        """Whether the last attempt failed for an outage."""
        return self._since is not None

    def failed(self, err: BaseException) -> None:
        """Record a failed attempt (call from the ``except`` block)."""
        if not is_transient(err):
            self._log.error("%s failed; retrying", self._task, exc_info=err)
            return
        self.failures += 1
        if self._since is None:
            self._since = time.monotonic()
            self._store = store_of(err)
            self._log.warning(
                "%s: a store is unreachable (%s: %s); retrying quietly until it is back",
                self._task,
                type(err).__name__,
                err,
            )

    def succeeded(self, *, proves: tuple[str, ...] = ("postgres", "redis")) -> None:
        """Record a successful attempt; ends an outage in the log if one was running and
        the attempt used the store that failed (``proves``: the stores it used)."""
        if self._since is None or self._store not in proves:
            return
        self._log.warning(
            "%s: stores reachable again after %.1f s (%d failed attempts)",
            self._task,
            time.monotonic() - self._since,
            self.failures,
        )
        self._since = None
        self.failures = 0

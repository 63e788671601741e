"""Readiness: whether this instance can take reports now, told without flapping.

A load balancer drops an instance that says "not ready", so the answer must be true in
both directions:

- A store that refuses or breaks the connection is down now: not ready at once.
- A dead pooled connection left by a restart is not an outage: the probe replaces it
  and asks again (Redis clients retry by themselves, see ``dispatch.services``; for
  PostgreSQL the pool is told to renew its connections), so the first check after a
  store comes back says ready.
- One slow answer is not an outage either: a store that misses the probe's deadline
  once is reported as slow but ready; only a second miss in a row (or a miss right
  after a failure) makes the instance not ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from dispatch.db import load_migrations
from dispatch.transient import is_transient

# A probe must answer quickly even when a store hangs.
PROBE_TIMEOUT_S = 2.0


class _Store:
    """One store's probe and the memory of its last outcome."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.last_ok = True

    async def probe(
        self, attempt: Callable[[], Awaitable[str]], renew: Callable[[], Awaitable[None]]
    ) -> tuple[str, str | None]:
        """("ok" or what is wrong, a warning or None)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROBE_TIMEOUT_S
        try:
            for tries_left in (1, 0):
                try:
                    async with asyncio.timeout_at(deadline):
                        outcome = await attempt()
                    break
                except TimeoutError:
                    raise
                except Exception as err:
                    if tries_left == 0 or not is_transient(err):
                        raise
                    # Possibly a connection that died with a restart: renew, ask again.
                    await renew()
        except TimeoutError:
            if self.last_ok:
                self.last_ok = False
                return "ok", f"no answer within {PROBE_TIMEOUT_S:.0f} s once; still counted ready"
            return f"unreachable: no answer within {PROBE_TIMEOUT_S:.0f} s", None
        except Exception as err:
            self.last_ok = False
            if not is_transient(err):
                raise
            return f"unreachable: {type(err).__name__}: {err}", None
        self.last_ok = True
        return outcome, None


class Readiness:
    """Probes PostgreSQL (and the schema's version) and Redis for ``/readyz``."""

    def __init__(self, *, pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
        self._pool = pool
        self._redis = redis
        self._postgres = _Store("postgres")
        self._redis_store = _Store("redis")
        self._latest = max(m.version for m in load_migrations())

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the body ``/readyz`` answers with)."""
        (pg_state, pg_warning), (redis_state, redis_warning) = await asyncio.gather(
            self._postgres.probe(self._schema_version, self._renew_postgres),
            self._redis_store.probe(self._ping, self._renew_redis),
        )
        checks: dict[str, str] = {"postgres": "ok", "migrations": "unknown", "redis": redis_state}
        if pg_state.startswith("unreachable"):
            checks["postgres"] = pg_state
        elif pg_state in (str(self._latest), "ok"):  # "ok": slow once, version unread
            checks["migrations"] = "ok"
        else:
            checks["migrations"] = f"at version {pg_state}, expected {self._latest}"
        ready = all(value == "ok" for value in checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
        warnings = {
            name: text
            for name, text in (("postgres", pg_warning), ("redis", redis_warning))
            if text is not None
        }
        if warnings:
            body["warnings"] = warnings
        return ready, body

    async def _schema_version(self) -> str:
        return str(await self._pool.fetchval("SELECT max(version) FROM schema_migrations"))

    async def _renew_postgres(self) -> None:
        # asyncpg drops connections it saw close, but not one whose server went away
        # silently; expiring them all makes every later acquire use a fresh one.
        await self._pool.expire_connections()

    async def _ping(self) -> str:
        await self._redis.ping()
        return "ok"

    async def _renew_redis(self) -> None:
        # The client's own retry already reconnected once; nothing more to renew.
        return None

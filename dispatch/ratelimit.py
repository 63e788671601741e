"""Per-gateway request rate limits, shared by every instance through Redis.

A gateway that floods (a retry loop gone wrong, a compromised aggregator) must not
starve the others. Requests over the limit get 429 with Retry-After; gateways retry,
so nothing is lost, only delayed.

Without Redis the limit cannot be counted, and the limiter fails open: every request
goes through unlimited until Redis answers again. For 112 that is the safer error: a
limiter whose store is down must not refuse an emergency, while a flood during a Redis
outage is still bounded by PostgreSQL (each report is a transaction) and shows in the
log. The check is also given a short time budget, so a Redis that hangs instead of
refusing does not delay every report either. The outage is logged once when it begins
and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dispatch.errors import DispatchError
from dispatch.keys import RedisKeys
from dispatch.transient import OutageLog

log = logging.getLogger(__name__)

# Longest a report waits for its rate check before going through unlimited.
CHECK_BUDGET_S = 0.5


class RateLimited(DispatchError):
    """Too many requests from one gateway in the current second."""

    def __init__(self, gateway_id: str, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"gateway {gateway_id!r} sent more than {limit} requests in one second;"
            f" retry after {retry_after_s} s (the delivery was not stored)"
        )
        self.gateway_id = gateway_id
        self.retry_after_s = retry_after_s


class RateLimiter:
    """A fixed one-second window per gateway: one INCR per request."""

    def __init__(self, *, redis: aioredis.Redis, keys: RedisKeys, per_second: int) -> None:
        self._redis = redis
        self._keys = keys
        self._per_second = per_second
        self._outage = OutageLog(log, "gateway rate limit (failing open: reports go through)")

    async def check(self, gateway_id: str) -> None:
        """Count one request; RateLimited if the gateway is over its limit."""
        second = int(time.time())
        key = self._keys.gateway_rate(gateway_id, second)
        try:
            async with asyncio.timeout(CHECK_BUDGET_S):
                pipe = self._redis.pipeline(transaction=False)
                pipe.incr(key)
                pipe.expire(key, 2)
                count, _ = await pipe.execute()
        except (OSError, RedisError, TimeoutError) as err:
            # Fail open (see the module's docstring).
            self._outage.failed(err)
            return
        self._outage.succeeded()
        if int(count) > self._per_second:
            raise RateLimited(gateway_id, self._per_second, 1)

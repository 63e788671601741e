"""Per-gateway request rate limits, shared by every instance through Redis.

A gateway that floods (a retry loop gone wrong, a compromised aggregator) must not
starve the others. Requests over the limit get 429 with Retry-After; gateways retry,
so nothing is lost, only delayed.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dispatch.errors import DispatchError
from dispatch.keys import RedisKeys


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

    async def check(self, gateway_id: str) -> None:
        """Count one request; RateLimited if the gateway is over its limit."""
        second = int(time.time())
        key = self._keys.gateway_rate(gateway_id, second)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = await pipe.execute()
        except (OSError, RedisError):
            # Without Redis the limit cannot be counted; an emergency report is worth
            # more than the protection, so it goes through.
            return
        if int(count) > self._per_second:
            raise RateLimited(gateway_id, self._per_second, 1)

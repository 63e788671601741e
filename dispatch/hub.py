"""Fan-out: one Redis stream reader per instance feeds every websocket on it.

Each connection has its own bounded queue and its own writer task, so one slow client
never stalls the reader or the others: when its queue is full it is marked overflowed
and its connection is closed, to resume later from its last position.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dispatch.keys import RedisKeys
from dispatch.outbox import message_from_fields

log = logging.getLogger(__name__)

Message = dict[str, Any]


class Subscriber:
    """One client's live feed."""

    def __init__(self, wants: Callable[[Message], bool], maxsize: int) -> None:
        self._wants = wants
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)
        self.overflowed = asyncio.Event()

    def offer(self, message: Message) -> None:
        """Queue the message if this client is entitled to it; never blocks."""
        if self.overflowed.is_set() or not self._wants(message):
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed.set()


class Hub:
    """Reads the event stream and hands each event to interested subscribers."""

    def __init__(self, *, redis: aioredis.Redis, keys: RedisKeys, block_ms: int = 2000) -> None:
        self._redis = redis
        self._keys = keys
        self._block_ms = block_ms
        self._subscribers: set[Subscriber] = set()
        self._last_id = "0-0"

    @property
    def client_count(self) -> int:
        """Connected subscribers on this instance."""
        return len(self._subscribers)

    def subscribe(self, wants: Callable[[Message], bool], maxsize: int) -> Subscriber:
        """Start buffering live events for a new client."""
        subscriber = Subscriber(wants, maxsize)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop feeding a client that went away."""
        self._subscribers.discard(subscriber)

    async def start(self) -> None:
        """Remember where the stream ends now; call before accepting connections.

        Clients replay anything older from PostgreSQL, so the reader only needs what
        comes after this point.
        """
        latest = cast(list[Any], await self._redis.xrevrange(self._keys.events, count=1))
        if latest:
            self._last_id = _text(latest[0][0])

    async def run(self) -> None:
        """Read the stream forever; survives Redis outages."""
        while True:
            try:
                # RESP2 answer: [[stream, [(id, fields), ...]]]
                batches = cast(
                    list[Any],
                    await self._redis.xread(
                        {self._keys.events: self._last_id}, count=500, block=self._block_ms
                    ),
                )
            except asyncio.CancelledError:
                raise
            except (OSError, RedisError):
                log.exception("event stream read failed; retrying")
                await asyncio.sleep(0.5)
                continue
            for _stream, entries in batches or []:
                for entry_id, fields in entries:
                    self._last_id = _text(entry_id)
                    try:
                        message = message_from_fields(fields)
                    except ValueError:
                        # Not ours to deliver (a foreign or damaged entry); skip it.
                        log.exception("unreadable stream entry %s", self._last_id)
                        continue
                    for subscriber in list(self._subscribers):
                        subscriber.offer(message)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

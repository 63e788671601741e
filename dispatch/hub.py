"""Fan-out: one Redis stream reader per instance feeds every websocket on it.

An event is serialised once (the stream entry already holds its JSON text) and the
same text goes to every client of its audience: all city-wide consoles, each desk
whose zones admit it (asked once per desk, not once per console), and the MDTs it can
concern (their unit, or the incidents they follow). Per socket there is only the
queueing and the send.

Each connection has its own bounded queue and its own writer task, so one slow client
never stalls the reader or the others: when its queue is full it is marked overflowed
and its connection is closed, to resume later from its last position.

Unit positions take another path: batches published on a Redis channel by whichever
instance holds the MDT's socket (dispatch/positions.py) go to every console (a desk's
map shows the whole fleet, for assignments across its borders), never to MDTs. They
are not events: a batch a full queue cannot take is dropped (the next move is sent),
never a reason to cut the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from websockets.frames import Frame, Opcode

from dispatch.keys import RedisKeys
from dispatch.outbox import message_from_fields
from dispatch.scope import DeskScope
from dispatch.transient import OutageLog

log = logging.getLogger(__name__)

Message = dict[str, Any]


class Outgoing:
    """One message queued for clients: its text as sent, and the event's position
    (None for what is not an event, such as a positions batch).

    One object is queued for every client of the audience, so its websocket frame is
    encoded once, on first use, and the same bytes go to every socket.
    """

    __slots__ = ("_frame", "position", "text")

    def __init__(self, position: int | None, text: str) -> None:
        self.position = position
        self.text = text
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """The message as one unmasked text frame: what a server writes for it."""
        if self._frame is None:
            self._frame = Frame(Opcode.TEXT, self.text.encode()).serialize(mask=False)
        return self._frame


class Subscriber:
    """One client's live feed.

    ``unit_id`` and ``followed`` say which events can concern an MDT at all, so the hub
    need not ask every MDT about every event: its own unit's events, and the unit-less
    events of the incidents in ``followed()`` (a live view of its scope), of which
    ``wants`` (the scope) decides. A console's ``desk`` (its zones; None for the whole
    city) is its audience: the hub asks the desk rule once per desk and event.
    """

    def __init__(
        self,
        wants: Callable[[Message], bool],
        maxsize: int,
        *,
        unit_id: str | None = None,
        followed: Callable[[], set[int]] | None = None,
        desk: frozenset[str] | None = None,
    ) -> None:
        self._wants = wants
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize)
        self.overflowed = asyncio.Event()
        self.unit_id = unit_id
        self.followed = followed
        self.desk = desk
        self.indexed: frozenset[int] = frozenset()

    def offer_positions(self, outgoing: Outgoing) -> None:
        """Queue a positions message; drop it if the queue is full."""
        if self.overflowed.is_set():
            return
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(outgoing)

    def put(self, outgoing: Outgoing) -> None:
        """Queue an event this client is entitled to; never blocks."""
        if self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait(outgoing)
        except asyncio.QueueFull:
            self.overflowed.set()

    def offer(self, message: Message, outgoing: Outgoing) -> None:
        """Queue the event if this client's scope admits it (``message`` is what the
        scope reads, ``outgoing`` what is sent)."""
        if not self.overflowed.is_set() and self._wants(message):
            self.put(outgoing)


class Hub:
    """Reads the event stream and hands each event to interested subscribers."""

    def __init__(self, *, redis: aioredis.Redis, keys: RedisKeys, block_ms: int = 2000) -> None:
        self._redis = redis
        self._keys = keys
        self._block_ms = block_ms
        # Consoles by audience (None: city-wide), each desk with its rule; MDTs by route.
        self._consoles: dict[frozenset[str] | None, set[Subscriber]] = {}
        self._desks: dict[frozenset[str], DeskScope] = {}
        self._by_unit: dict[str, set[Subscriber]] = {}
        self._by_incident: dict[int, set[Subscriber]] = {}
        # Sockets with a filter of their own (volunteers, agencies): asked per event.
        self._filtered: set[Subscriber] = set()
        # In-process observers of every event (not clients: never queued, never counted).
        self._watchers: list[Callable[[Message], None]] = []
        self._last_id = "0-0"

    @property
    def client_count(self) -> int:
        """Connected subscribers on this instance."""
        consoles = sum(len(s) for s in self._consoles.values())
        return consoles + sum(len(s) for s in self._by_unit.values()) + len(self._filtered)

    def subscribe(
        self,
        wants: Callable[[Message], bool],
        maxsize: int,
        *,
        unit_id: str | None = None,
        followed: Callable[[], set[int]] | None = None,
        desk: frozenset[str] | None = None,
        filtered: bool = False,
    ) -> Subscriber:
        """Start buffering live events for a new client: an MDT when ``unit_id`` (its
        scope is ``wants``); a client whose ``wants`` is asked about every event when
        ``filtered`` (a volunteer, an agency); else a console of ``desk`` (None: the
        whole city), which the desk rule alone decides for."""
        subscriber = Subscriber(wants, maxsize, unit_id=unit_id, followed=followed, desk=desk)
        if filtered:
            self._filtered.add(subscriber)
        elif unit_id is None:
            self._consoles.setdefault(desk, set()).add(subscriber)
            if desk is not None and desk not in self._desks:
                self._desks[desk] = DeskScope(desk)
        else:
            self._by_unit.setdefault(unit_id, set()).add(subscriber)
            self._reindex(subscriber)
        return subscriber

    def watch(self, observer: Callable[[Message], None]) -> Callable[[], None]:
        """Call ``observer`` with every event this instance reads (it must not block);
        returns the function that stops it. For background work woken by events."""
        self._watchers.append(observer)
        return lambda: self._watchers.remove(observer)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop feeding a client that went away."""
        if subscriber in self._filtered:
            self._filtered.discard(subscriber)
            return
        if subscriber.unit_id is None:
            audience = self._consoles.get(subscriber.desk)
            if audience is not None:
                audience.discard(subscriber)
                if not audience:
                    del self._consoles[subscriber.desk]
                    if subscriber.desk is not None:
                        self._desks.pop(subscriber.desk, None)
            return
        same_unit = self._by_unit.get(subscriber.unit_id, set())
        same_unit.discard(subscriber)
        if not same_unit:
            self._by_unit.pop(subscriber.unit_id, None)
        for incident_id in subscriber.indexed:
            self._unindex(incident_id, subscriber)
        subscriber.indexed = frozenset()

    def _reindex(self, subscriber: Subscriber) -> None:
        """Follow the incidents the MDT's scope follows now."""
        if subscriber.followed is None:
            return
        now = frozenset(subscriber.followed())
        if now == subscriber.indexed:
            return
        for incident_id in subscriber.indexed - now:
            self._unindex(incident_id, subscriber)
        for incident_id in now - subscriber.indexed:
            self._by_incident.setdefault(incident_id, set()).add(subscriber)
        subscriber.indexed = now

    def _unindex(self, incident_id: int, subscriber: Subscriber) -> None:
        followers = self._by_incident.get(incident_id)
        if followers is not None:
            followers.discard(subscriber)
            if not followers:
                del self._by_incident[incident_id]

    def deliver(self, message: Message, text: str | None = None) -> None:
        """Hand one event to every client it can concern; ``text`` is the message as
        JSON (serialised here once when not given), the same for every client."""
        if text is None:
            text = json.dumps(message, separators=(",", ":"))
        outgoing = Outgoing(int(message["position"]), text)
        for observer in list(self._watchers):
            observer(message)
        event = message["event"]
        for desk, consoles in list(self._consoles.items()):
            if desk is None or self._desks[desk].admits(event):
                for console in list(consoles):
                    console.put(outgoing)
        for client in list(self._filtered):
            client.offer(message, outgoing)
        unit_id, incident_id = event.get("unit_id"), event.get("incident_id")
        if unit_id is not None:
            mdts = self._by_unit.get(unit_id, set())
        elif incident_id is not None:
            mdts = self._by_incident.get(incident_id, set())
        else:
            return
        for mdt in list(mdts):
            mdt.offer(message, outgoing)
            self._reindex(mdt)  # the event may have started or ended a job

    def deliver_positions(self, units: list[dict[str, Any]]) -> None:
        """Hand a batch of unit positions to every console, serialised once."""
        if not units or not self._consoles:
            return
        text = json.dumps({"type": "positions", "units": units}, separators=(",", ":"))
        outgoing = Outgoing(None, text)
        for consoles in list(self._consoles.values()):
            for console in list(consoles):
                console.offer_positions(outgoing)

    async def run_positions(self) -> None:
        """Relay published position batches to this instance's consoles, forever."""
        outage = OutageLog(log, "positions channel")
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._keys.positions_channel)
                    outage.succeeded()
                    async for item in pubsub.listen():
                        try:
                            units = json.loads(item["data"])["units"]
                            if not isinstance(units, list):
                                raise TypeError("units is not a list")
                        except (ValueError, KeyError, TypeError):
                            log.warning("unreadable positions message skipped")
                            continue
                        self.deliver_positions(units)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # pushes must resume whatever broke them
                outage.failed(err)
                await asyncio.sleep(0.5)

    async def start(self) -> None:
        """Remember where the stream ends now; call before accepting connections.

        Clients replay anything older from PostgreSQL, so the reader only needs what
        comes after this point.
        """
        latest = cast(list[Any], await self._redis.xrevrange(self._keys.events, count=1))
        if latest:
            self._last_id = _text(latest[0][0])

    async def run(self) -> None:
        """Read the stream forever; survives Redis outages (logged once each)."""
        outage = OutageLog(log, "event stream reader")
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
            except (OSError, RedisError) as err:
                outage.failed(err)
                await asyncio.sleep(0.5)
                continue
            outage.succeeded()
            for _stream, entries in batches or []:
                for entry_id, fields in entries:
                    self._last_id = _text(entry_id)
                    try:
                        message = message_from_fields(fields)
                        raw = fields.get(b"e") or fields.get("e")
                        text = raw.decode() if isinstance(raw, bytes) else str(raw)
                    except ValueError:
                        # Not ours to deliver (a foreign or damaged entry); skip it.
                        log.exception("unreadable stream entry %s", self._last_id)
                        continue
                    try:
                        self.deliver(message, text)
                    except Exception:
                        # One event that trips a scope must not stop the feed of every
                        # client on this instance; they can still replay it.
                        log.exception("event %s not delivered", self._last_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

"""The exchange websocket (docs/exchange.md, "Subscriptions"): an agency subscribes to
the EIDOs of the incidents handed to it and is notified of each change, resuming by
position after a reconnect exactly as a console does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from dispatch import readmodels
from dispatch.api.ws_auth import (
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    refuse,
    refuse_at_capacity,
)
from dispatch.api.ws_frames import error_message
from dispatch.exchange.agencies import Agency
from dispatch.exchange.runtime import Exchange
from dispatch.exchange.snapshot import incident_eido
from dispatch.exchange.subscription import (
    SCOPE_EVENTS,
    SOCKET_PATH,
    BadFrame,
    Subscribe,
    handshake_body,
    latest_per_incident,
    notify,
    parse_frame,
    subscribe_response,
)
from dispatch.hub import Message, Subscriber
from gateways.signing import SignatureError, verify

router = APIRouter()
log = logging.getLogger(__name__)


class AgencySession:
    """One agency's socket: its scope (incidents handed to it) and what it was sent."""

    def __init__(self, ws: WebSocket, exchange: Exchange, agency: Agency) -> None:
        self.ws = ws
        self.exchange = exchange
        self.agency = agency
        self.scope: set[int] = set()
        self.subscription_id: str | None = None
        self.subscriber: Subscriber | None = None
        self.last_sent = 0
        # Set once a subscribe's first notifies are out: live ones follow them, in order.
        self.ready = asyncio.Event()
        self._lock = asyncio.Lock()

    def wants(self, message: Message) -> bool:
        """Events of incidents handed to this agency, and those that may change which."""
        event = message["event"]
        return event["type"] in SCOPE_EVENTS or event["incident_id"] in self.scope

    async def send(self, message: dict[str, Any]) -> None:
        """Send one frame (the reader and the pump both send)."""
        async with self._lock:
            await self.ws.send_text(json.dumps(message, separators=(",", ":"), default=str))

    async def load_scope(self) -> None:
        """The incidents handed to this agency and not refused or given up on."""
        rows = await self.exchange.services.pool.fetch(
            "SELECT DISTINCT incident_id FROM handoffs WHERE agency_id = $1"
            " AND state IN ('pending', 'acknowledged')",
            self.agency.id,
        )
        self.scope = {r["incident_id"] for r in rows}

    async def notify(self, incident_id: int, position: int) -> None:
        """Send one incident's EIDO as it is now, labelled with ``position``."""
        if self.subscription_id is None:
            return  # unsubscribed meanwhile
        async with self.exchange.services.pool.acquire() as conn:
            found = await incident_eido(
                conn, incident_id, origin=self.exchange.origin, agencies=self.exchange.agencies
            )
        if found is not None:
            await self.send(notify(self.subscription_id, position, found[1]))
        self.last_sent = max(self.last_sent, position)

    async def subscribe(self, request: Subscribe) -> None:
        """Start the feed: a notify per covered incident (or, resuming, per incident
        that changed after the position), then live notifies."""
        if self.subscription_id is not None:
            await self.send(
                subscribe_response(
                    request.request_id, None, self.last_sent, 409, "already subscribed"
                )
            )
            return
        services = self.exchange.services
        # Subscribed before reading, so nothing between the read and the feed is lost.
        self.subscriber = services.hub.subscribe(
            self.wants, services.settings.ws_queue_size, filtered=True
        )
        await self.load_scope()
        async with services.pool.acquire() as conn:
            newest = await readmodels.last_position(conn)
            after = request.after
            if after is not None and after > newest:
                after = None  # beyond this server's log: start afresh (as a console)
            if after is None:
                changed = [(newest, i) for i in sorted(self.scope)]
            else:
                rows = await conn.fetch(
                    "SELECT position, incident_id FROM events WHERE position > $1"
                    " AND incident_id = ANY($2::bigint[]) ORDER BY position",
                    after,
                    sorted(self.scope),
                )
                changed = latest_per_incident((r["position"], r["incident_id"]) for r in rows)
        self.subscription_id = uuid.uuid4().hex
        self.last_sent = after if after is not None else newest
        await self.send(
            subscribe_response(request.request_id, self.subscription_id, self.last_sent)
        )
        for position, incident_id in changed:
            await self.notify(incident_id, position)
        self.last_sent = max(self.last_sent, newest)
        self.ready.set()

    async def pump(self) -> None:
        """Live notifies, skipping what the subscribe already covered; a subscriber too
        far behind is closed (it subscribes again with ``after``)."""
        while True:
            await self.ready.wait()
            subscriber = self.subscriber
            if subscriber is None:
                self.ready.clear()
                continue
            if subscriber.overflowed.is_set() and subscriber.queue.empty():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.ws.close(CLOSE_TOO_SLOW, "too far behind; subscribe again with after"),
                        2.0,
                    )
                return
            try:
                async with asyncio.timeout(0.5):
                    item = await subscriber.queue.get()
            except TimeoutError:
                continue  # unsubscribed meanwhile, or simply nothing new
            if item.position is None:
                continue  # the fleet's positions: not an event
            message = json.loads(item.text)
            if message.get("type") != "event":
                continue
            position = int(message["position"])
            if position <= self.last_sent:
                continue
            event = message["event"]
            if event["type"] in SCOPE_EVENTS:
                await self.load_scope()
            if event["incident_id"] in self.scope:
                await self.notify(event["incident_id"], position)
            self.last_sent = max(self.last_sent, position)

    async def listen(self) -> None:
        """Take subscribe and unsubscribe frames until the agency leaves."""
        while True:
            text = await self.ws.receive_text()
            try:
                frame = parse_frame(text)
            except BadFrame as err:
                await self.send(error_message("bad_frame", str(err)))
                continue
            if isinstance(frame, Subscribe):
                await self.subscribe(frame)
                continue
            ok = frame.subscription_id == self.subscription_id
            if ok and self.subscriber is not None:
                self.exchange.services.hub.unsubscribe(self.subscriber)
                self.subscriber = None
                self.subscription_id = None
                self.ready.clear()
            await self.send(
                {
                    "type": "unsubscribeResponse",
                    "requestId": frame.request_id,
                    "statusCode": 200 if ok else 404,
                }
            )


def _agency(ws: WebSocket, exchange: Exchange) -> Agency | str:
    """The signing agency, or why the handshake is refused."""
    agency_id = ws.headers.get("x-erss-agency")
    timestamp = ws.headers.get("x-erss-timestamp")
    signature = ws.headers.get("x-erss-signature")
    if not (agency_id and timestamp and signature):
        return "X-ERSS-Agency, X-ERSS-Timestamp and X-ERSS-Signature headers are required"
    agency = exchange.agencies.get(agency_id)
    if agency is None:
        return "unknown agency: X-ERSS-Agency names no configured agency"
    try:
        verify(
            secrets=agency.secrets,
            timestamp=timestamp,
            body=handshake_body(),
            signature=signature,
            now=time.time(),
            max_skew_s=exchange.services.settings.gateway_clock_skew_s,
        )
    except SignatureError as err:
        return f"{err} (a socket signs 'GET {SOCKET_PATH}' as its body)"
    return agency


@router.websocket(SOCKET_PATH)
async def exchange_socket(ws: WebSocket) -> None:
    """Signed by an agency: subscribe to the EIDOs of the incidents handed to it."""
    exchange: Exchange = ws.app.state.exchange
    services = exchange.services
    if not services.websockets.try_acquire():
        await refuse_at_capacity(ws, services.websockets.limit)
        return
    try:
        await ws.accept()
        agency = _agency(ws, exchange)
        if isinstance(agency, str):
            await refuse(
                ws, error_message("Unauthorized", agency), CLOSE_UNAUTHORIZED, "unauthorized"
            )
            return
        await _serve(AgencySession(ws, exchange, agency))
    finally:
        services.websockets.release()


async def _serve(session: AgencySession) -> None:
    tasks = [asyncio.create_task(session.listen()), asyncio.create_task(session.pump())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if session.subscriber is not None:
            session.exchange.services.hub.unsubscribe(session.subscriber)
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception) and not isinstance(
                result, WebSocketDisconnect | RuntimeError | OSError
            ):
                log.error("exchange socket failed: %s", type(result).__name__)

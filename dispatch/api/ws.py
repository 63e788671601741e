"""Console and MDT websockets: snapshot or replay, then live events, then commands.

The order matters for "no gap, no duplicate": a connection subscribes to the live feed
first (buffering), then reads the snapshot or replays from PostgreSQL, then drains the
buffer skipping every position it already sent. Positions are assigned by the outbox
relay in commit order, so "everything after P" is well defined.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketState

from dispatch import readmodels
from dispatch.api.deps import bearer_token
from dispatch.api.errors import error_code
from dispatch.auth import Principal, authenticate
from dispatch.errors import DispatchError, Unauthorized
from dispatch.events import format_position, parse_position
from dispatch.hub import Message, Subscriber
from dispatch.retry import in_transaction
from dispatch.scope import DeskScope, MdtScope
from dispatch.services import Services
from geo.location import InvalidLocation, location_from_fix

router = APIRouter()
log = logging.getLogger(__name__)


class LocationPing(BaseModel):
    """An MDT's AVL ping."""

    model_config = ConfigDict(strict=True, extra="ignore")

    type: Literal["location"]
    lat: float
    lon: float
    accuracy_m: float | None = None
    # Strict numbers (a latitude sent as a string is an error), but the time arrives as
    # ISO 8601 text, which strict mode would refuse outside JSON parsing.
    time: Annotated[AwareDatetime | None, Field(strict=False)] = None


def _first_error(err: ValidationError) -> str:
    first = err.errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


# Close codes (docs/protocol.md): 4401 bad token, 4400 bad resume position,
# 4008 client too slow (its queue overflowed; reconnect and resume).
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_REQUEST = 4400
CLOSE_TOO_SLOW = 4008
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: the instance is at its websocket limit
_REPLAY_PAGE = 1000


class Session:
    """One websocket client: what it may see and what it has been sent."""

    def __init__(self, ws: WebSocket, services: Services, principal: Principal) -> None:
        self.ws = ws
        self.services = services
        self.principal = principal
        self.unit_id = principal.name if principal.kind == "unit" else None
        self.zones = principal.zones if principal.kind == "operator" else None
        self.agency: str | None = None
        self.scope: MdtScope | DeskScope | None = DeskScope(self.zones) if self.zones else None
        self.last_sent = 0
        self._send_lock = asyncio.Lock()

    def wants(self, message: Message) -> bool:
        """A city console sees every event; a desk or an MDT what its scope admits."""
        return self.scope is None or self.scope.admits(message["event"])

    def followed(self) -> set[int]:
        """The incidents an MDT's scope follows (a live view; empty for consoles)."""
        return self.scope.incident_ids if isinstance(self.scope, MdtScope) else set()

    async def load_scope(self) -> None:
        """Seed an MDT's scope with the incidents its unit holds now."""
        if self.unit_id is None:
            return
        async with self.services.pool.acquire() as conn:
            held = await readmodels.active_assignments(conn, unit_id=self.unit_id)
        self.scope = MdtScope(self.unit_id, (a["incident_id"] for a in held))

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message; serialised because the reader and writer both send."""
        async with self._send_lock:
            await self.ws.send_text(json.dumps(message, separators=(",", ":"), default=str))

    async def send_error(self, code: str, detail: str, **extra: Any) -> None:
        """Tell the client what was wrong with its last message."""
        await self.send({"type": "error", "code": code, "detail": detail, **extra})

    async def send_snapshot(self, reason: str | None = None) -> None:
        """Current state the client is entitled to, and the position it reflects.

        ``reason`` says why a client that asked to resume got a snapshot instead.
        """
        async with (
            self.services.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            position = await readmodels.last_position(conn)
            message: dict[str, Any] = {"type": "snapshot", "position": format_position(position)}
            if reason is not None:
                message["reason"] = reason
            if self.unit_id is None:
                message["incidents"] = await readmodels.open_incidents(conn, zones=self.zones)
                message["units"] = await readmodels.list_units(conn, zones=self.zones)
                message["assignments"] = await readmodels.active_assignments(conn)
                if self.zones is not None:
                    message["desk"] = sorted(self.zones)
            else:
                message["unit"] = await readmodels.unit_view(conn, self.unit_id)
                message["assignments"] = await readmodels.active_assignments(
                    conn, unit_id=self.unit_id
                )
        async with self._send_lock:
            await self.ws.send_text(json.dumps(message, separators=(",", ":"), default=str))
            self.last_sent = position

    async def replay(self, after: int) -> None:
        """Send every event after ``after`` from PostgreSQL, in order.

        A position beyond the end of the log (a client of another deployment, or one
        whose server's database was restored from a backup) cannot be resumed: the
        client gets a fresh snapshot, with the reason.
        """
        async with self.services.pool.acquire() as conn:
            newest = await readmodels.last_position(conn)
        if after > newest:
            await self.send_snapshot(
                reason=f"position {format_position(after)} is beyond this server's event log"
                f" ({format_position(newest)}); start again from this snapshot"
            )
            return
        async with self._send_lock:
            cursor = after
            while True:
                async with self.services.pool.acquire() as conn:
                    events = await readmodels.replay(
                        conn,
                        after=cursor,
                        unit_id=self.unit_id,
                        zones=self.zones,
                        limit=_REPLAY_PAGE,
                    )
                for event in events:
                    await self.ws.send_text(json.dumps(event.to_message(), default=str))
                    cursor = event.position
                if len(events) < _REPLAY_PAGE:
                    break
            # Only what was actually sent counts: an event positioned after the last page
            # was read still has to come through the live feed.
            self.last_sent = cursor
            await self.ws.send_text(
                json.dumps({"type": "replayed", "position": format_position(self.last_sent)})
            )

    async def pump(self, subscriber: Subscriber) -> None:
        """Forward live events, skipping what replay or snapshot already covered."""
        while True:
            message = await subscriber.queue.get()
            if message.get("type") == "positions":  # not an event: no position to track
                async with self._send_lock:
                    await self.ws.send_text(message["text"])
                continue
            position = int(message["position"])
            async with self._send_lock:
                if position > self.last_sent:
                    await self.ws.send_text(json.dumps(message, separators=(",", ":")))
                    self.last_sent = position

    async def listen(self) -> None:
        """Handle client messages until the client goes away."""
        while True:
            text = await self.ws.receive_text()
            try:
                message = json.loads(text)
            except json.JSONDecodeError as err:
                await self.send_error("invalid_json", f"message is not JSON: {err}")
                continue
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                await self.send_error("invalid_message", "a message is a JSON object with a type")
                continue
            await self.handle(message)

    async def handle(self, message: dict[str, Any]) -> None:
        """One client command."""
        kind = message["type"]
        if kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "resume":
            try:
                after = parse_position(str(message.get("after", "")))
            except ValueError as err:
                await self.send_error("invalid_position", str(err))
                return
            await self.replay(after)
        elif kind in ("accept", "decline") and self.unit_id is not None:
            assignment_id = message.get("assignment_id")
            if not isinstance(assignment_id, int) or isinstance(assignment_id, bool):
                await self.send_error(
                    "invalid_message", f"{kind} needs an integer assignment_id", request=kind
                )
                return
            unit_id = self.unit_id
            await self._transact(
                kind,
                "assignment",
                lambda conn: self.services.dispatcher.respond(
                    conn, unit_id=unit_id, assignment_id=assignment_id, accept=kind == "accept"
                ),
            )
        elif kind == "status" and self.unit_id is not None:
            status = message.get("status")
            if not isinstance(status, str):
                await self.send_error("invalid_message", "status needs a string", request=kind)
                return
            unit_id = self.unit_id
            await self._transact(
                kind,
                "unit",
                lambda conn: self.services.dispatcher.report_status(
                    conn, unit_id=unit_id, status=status, actor=self.principal.actor
                ),
            )
        elif kind == "location" and self.unit_id is not None:
            await self._location(self.unit_id, message)
        else:
            await self.send_error(
                "unknown_type", f"message type {kind!r} is not understood here", request=kind
            )

    async def _location(self, unit_id: str, message: dict[str, Any]) -> None:
        """An AVL ping: no answer when it is good (MDTs send one every few seconds)."""
        try:
            fix = LocationPing.model_validate(message)
            location = location_from_fix(
                lat=fix.lat, lon=fix.lon, radius_m=fix.accuracy_m, method="gps", time=fix.time
            )
        except ValidationError as err:
            await self.send_error("invalid_message", _first_error(err), request="location")
            return
        except InvalidLocation as err:
            await self.send_error("invalid_location", str(err), request="location")
            return
        if self.agency is None:
            self.agency = await self.services.pool.fetchval(
                "SELECT agency FROM units WHERE id = $1", unit_id
            )
        await self.services.positions.record(unit_id, str(self.agency), location)

    async def _transact(
        self,
        request: str,
        field: str,
        action: Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]],
    ) -> None:
        """Run a client command in one transaction; answer with an ack or the error."""
        try:
            result = await in_transaction(self.services.pool, action)
        except DispatchError as err:
            await self.send_error(error_code(err), str(err), request=request)
            return
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
            # The crew must hear that the command did not take, not lose the socket.
            log.exception("MDT command %s failed", request)
            await self.send_error(
                "unavailable",
                f"the command was not applied ({type(err).__name__}); send it again",
                request=request,
            )
            return
        if result.get("status") in ("available", "declined"):
            self.services.queue.wake()  # a unit is free: serve the waiting queue now
        await self.send({"type": "ack", "request": request, field: result})


async def _serve(ws: WebSocket, kind: str) -> None:
    services: Services = ws.app.state.services
    if not services.websockets.try_acquire():
        await ws.accept()
        limit = services.websockets.limit
        log.warning("websocket refused: this instance holds its limit of %d", limit)
        await ws.send_text(
            json.dumps(
                {
                    "type": "error",
                    "code": "at_capacity",
                    "detail": f"this server holds its limit of {limit} websockets;"
                    " reconnect after a pause (another instance may have room)",
                }
            )
        )
        await ws.close(CLOSE_TRY_AGAIN_LATER, "at capacity")
        return
    try:
        await _serve_counted(ws, services, kind)
    finally:
        services.websockets.release()


async def _serve_counted(ws: WebSocket, services: Services, kind: str) -> None:
    token = bearer_token(ws.headers.get("authorization")) or ws.query_params.get("token")
    await ws.accept()
    try:
        principal = await authenticate(services.pool, token, kind=kind)
    except Unauthorized as err:
        await ws.send_text(
            json.dumps({"type": "error", "code": "Unauthorized", "detail": str(err)})
        )
        await ws.close(CLOSE_UNAUTHORIZED, "unauthorized")
        return
    after_text = ws.query_params.get("after")
    after: int | None = None
    if after_text is not None:
        try:
            after = parse_position(after_text)
        except ValueError as err:
            await ws.send_text(
                json.dumps({"type": "error", "code": "invalid_position", "detail": str(err)})
            )
            await ws.close(CLOSE_BAD_REQUEST, "invalid position")
            return
    session = Session(ws, services, principal)
    await session.load_scope()
    subscriber = services.hub.subscribe(
        session.wants,
        services.settings.ws_queue_size,
        unit_id=session.unit_id,
        followed=session.followed,
    )
    connected = services.metrics.websocket_clients.labels("mdt" if kind == "unit" else "console")
    connected.inc()
    tasks: list[asyncio.Task[Any]] = []
    try:
        if after is None:
            await session.send_snapshot()
        else:
            await session.replay(after)
        overflow = asyncio.create_task(subscriber.overflowed.wait())
        tasks = [
            asyncio.create_task(session.pump(subscriber)),
            asyncio.create_task(session.listen()),
            overflow,
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if overflow.done():
            # The writer may be stuck in a send to a client that stopped reading, so it
            # is cancelled rather than asked; the close gets a bounded wait for the same
            # reason (uvicorn's ping timeout reaps a socket that never drains).
            services.hub.unsubscribe(subscriber)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    ws.close(CLOSE_TOO_SLOW, "too far behind; reconnect with ?after=<position>"),
                    2.0,
                )
    except WebSocketDisconnect:
        pass
    finally:
        connected.dec()
        services.hub.unsubscribe(subscriber)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        # A client gone mid-send (a closed socket, a keepalive timeout) surfaces as the
        # server's own error on the next send: normal, not a bug to report. Anything
        # else from a session that is still connected is one.
        gone = ws.client_state == WebSocketState.DISCONNECTED or (
            ws.application_state == WebSocketState.DISCONNECTED
        )
        for result in results:
            if isinstance(result, WebSocketDisconnect | asyncio.CancelledError):
                continue
            if isinstance(result, Exception) and not (
                gone and isinstance(result, RuntimeError | OSError)
            ):
                raise result


@router.websocket("/v1/ws/console")
async def console_socket(ws: WebSocket) -> None:
    """Live feed for control-room consoles (operator token)."""
    await _serve(ws, "operator")


@router.websocket("/v1/ws/mdt")
async def mdt_socket(ws: WebSocket) -> None:
    """Offers and assignments for one unit's MDT (unit token)."""
    await _serve(ws, "unit")

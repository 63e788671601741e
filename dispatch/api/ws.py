"""Console and MDT websockets: snapshot or replay, then live events, then commands.

The order matters for "no gap, no duplicate": a connection subscribes to the live feed
first (buffering), then reads the snapshot or replays from PostgreSQL, then drains the
buffer skipping every position it already sent. Positions are assigned by the outbox
relay in commit order, so "everything after P" is well defined.

Who may connect is decided in ``ws_auth``; what a client frame may be in ``ws_frames``.
A session outlives anything a client sends and any outage: a failed command is answered
(``unavailable`` or ``internal_error``), and a bug closes the socket with 1011, never by
dropping the TCP connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from dispatch import readmodels
from dispatch.api.errors import error_code
from dispatch.api.ws_auth import (
    CLOSE_BAD_REQUEST,
    CLOSE_INTERNAL_ERROR,
    CLOSE_TOO_SLOW,
    authenticate_socket,
    refuse,
    refuse_at_capacity,
    refuse_unavailable,
)
from dispatch.api.ws_catchup import CatchUp
from dispatch.api.ws_frames import (
    CONSOLE_COMMANDS,
    MDT_COMMANDS,
    Auth,
    Command,
    FrameError,
    LocationPing,
    Ping,
    Respond,
    Resume,
    StatusReport,
    error_message,
    parse_frame,
)
from dispatch.api.ws_writer import frame_writer, send_all
from dispatch.auth import Principal
from dispatch.errors import DispatchError
from dispatch.events import parse_position
from dispatch.hub import Message, Outgoing, Subscriber
from dispatch.retry import in_transaction
from dispatch.scope import DeskScope, MdtScope
from dispatch.services import Services
from dispatch.transient import is_transient
from geo.location import InvalidLocation, location_from_fix

router = APIRouter()
log = logging.getLogger(__name__)


class Session(CatchUp):
    """One websocket client: what it may see and what it has been sent."""

    def __init__(self, ws: WebSocket, services: Services, principal: Principal) -> None:
        super().__init__(
            ws,
            services,
            unit_id=principal.name if principal.kind == "unit" else None,
            zones=principal.zones if principal.kind == "operator" else None,
        )
        self.principal = principal
        self.agency: str | None = None
        # An empty desk (no zones) still is a desk: it sees unzoned incidents only, as
        # on REST; only a city-wide operator (None) goes unfiltered.
        self.scope: MdtScope | DeskScope | None = (
            DeskScope(self.zones) if self.zones is not None else None
        )

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
        await self.send(error_message(code, detail, **extra))

    async def pump(self, subscriber: Subscriber) -> None:
        """Forward live events, skipping what replay or snapshot already covered.

        The text (and its frame) is the hub's, the same for every client: nothing is
        serialised here. What has queued up since the last write goes in one write.
        """
        queue = subscriber.queue
        write = frame_writer(self.ws)
        counters = self.services.metrics
        while True:
            outgoing = await queue.get()
            async with self._send_lock:
                batch: list[Outgoing] = []
                while True:
                    position = outgoing.position
                    if position is None or position > self.last_sent:
                        batch.append(outgoing)
                        if position is not None:
                            self.last_sent = position
                    if queue.empty():
                        break
                    outgoing = queue.get_nowait()
                writes = await send_all(self.ws, write, batch)
                counters.ws_messages.inc(len(batch))
                counters.ws_writes.inc(writes)

    async def listen(self) -> None:
        """Handle client messages until the client goes away.

        Every frame is answered or acted on; no frame and no failed command ends the
        session (only the client leaving does, or a send to it failing).
        """
        allowed = CONSOLE_COMMANDS if self.unit_id is None else MDT_COMMANDS
        while True:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(frame.get("code", 1000))
            try:
                command = parse_frame(frame, allowed)
            except FrameError as err:
                await self.send(err.message())
                continue
            try:
                await self.handle(command)
            except WebSocketDisconnect:
                raise
            except Exception as err:
                await self._failed(command.type, err)

    async def _failed(self, request: str, err: Exception) -> None:
        """Answer a command that raised: an outage the client can retry, or a bug."""
        if is_transient(err):
            # The crew must hear that the command did not take, not lose the socket.
            log.warning("websocket %s not applied: %s (%s)", request, type(err).__name__, err)
            await self.send_error(
                "unavailable",
                f"the {request} was not applied: the server cannot reach its database or"
                " cache; send it again in a few seconds",
                request=request,
            )
            return
        log.exception("websocket %s failed", request)
        await self.send_error(
            "internal_error",
            f"the server failed on this {request} (a bug, logged); check the current state"
            " (resume or reconnect) before sending it again",
            request=request,
        )

    async def handle(self, command: Command) -> None:
        """One client command (already parsed and allowed for this socket)."""
        if isinstance(command, Ping):
            if self.unit_id is not None:
                # The pong says the MDT's earlier pings are in Redis (ranking sees them).
                await self.services.positions.settled()
            await self.send({"type": "pong"})
        elif isinstance(command, Resume):
            await self.replay(command.position)
        elif isinstance(command, Auth):
            await self.send_error(
                "invalid_message", "already authenticated: auth is only a first message"
            )
        elif isinstance(command, Respond) and self.unit_id is not None:
            unit_id, accept = self.unit_id, command.type == "accept"
            await self._transact(
                command.type,
                "assignment",
                lambda conn: self.services.dispatcher.respond(
                    conn, unit_id=unit_id, assignment_id=command.assignment_id, accept=accept
                ),
            )
        elif isinstance(command, StatusReport) and self.unit_id is not None:
            unit_id = self.unit_id
            await self._transact(
                command.type,
                "unit",
                lambda conn: self.services.dispatcher.report_status(
                    conn, unit_id=unit_id, status=command.status, actor=self.principal.actor
                ),
            )
        elif isinstance(command, LocationPing) and self.unit_id is not None:
            await self._location(self.unit_id, command)

    async def _location(self, unit_id: str, fix: LocationPing) -> None:
        """An AVL ping: no answer when it is good (MDTs send one every few seconds)."""
        try:
            location = location_from_fix(
                lat=fix.lat, lon=fix.lon, radius_m=fix.accuracy_m, method="gps", time=fix.time
            )
        except InvalidLocation as err:
            await self.send_error("invalid_location", str(err), request="location")
            return
        if self.agency is None:
            self.agency = await self.services.pool.fetchval(
                "SELECT agency FROM units WHERE id = $1", unit_id
            )
        self.services.positions.take(unit_id, str(self.agency), location)

    async def _transact(
        self,
        request: str,
        field: str,
        action: Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]],
    ) -> None:
        """Run a client command in one transaction; answer with an ack or the error.

        Other failures (an outage, a bug) are answered by :meth:`listen`.
        """
        try:
            result = await in_transaction(self.services.pool, action)
        except DispatchError as err:
            await self.send_error(error_code(err), str(err), request=request)
            return
        if result.get("status") in ("available", "declined"):
            self.services.queue.wake()  # a unit is free: serve the waiting queue now
        await self.send({"type": "ack", "request": request, field: result})


async def _serve(ws: WebSocket, kind: str) -> None:
    services: Services = ws.app.state.services
    if not services.websockets.try_acquire():
        await refuse_at_capacity(ws, services.websockets.limit)
        return
    try:
        await _serve_counted(ws, services, kind)
    except Exception:
        # A bug, not the client's doing: logged, and the client gets a close frame
        # rather than a TCP connection dropped under it (uvicorn's answer to an escape).
        log.exception("websocket session failed")
        error = error_message(
            "internal_error", "the server failed on this connection (a bug, logged); reconnect"
        )
        await refuse(ws, error, CLOSE_INTERNAL_ERROR, "internal error")
    finally:
        services.websockets.release()


async def _serve_counted(ws: WebSocket, services: Services, kind: str) -> None:
    await ws.accept()
    authenticated = await authenticate_socket(ws, services, kind)
    if authenticated is None:
        return
    principal, after_text = authenticated
    after: int | None = None
    if after_text is not None:
        try:
            after = parse_position(after_text)
        except ValueError as err:
            await refuse(
                ws, error_message("invalid_position", str(err)), CLOSE_BAD_REQUEST, "bad position"
            )
            return
    session = Session(ws, services, principal)
    try:
        await session.load_scope()
    except Exception as err:
        if not is_transient(err):
            raise
        await refuse_unavailable(ws, err, "reading the unit's assignments")
        return
    subscriber = services.hub.subscribe(
        session.wants,
        services.settings.ws_queue_size,
        unit_id=session.unit_id,
        followed=session.followed,
        desk=session.zones,
    )
    connected = services.metrics.websocket_clients.labels("mdt" if kind == "unit" else "console")
    connected.inc()
    tasks: list[asyncio.Task[Any]] = []
    try:
        try:
            if after is None:
                await session.send_snapshot()
            else:
                await session.replay(after)
        except WebSocketDisconnect:
            raise  # the client left mid-snapshot: not an outage
        except Exception as err:
            if not is_transient(err):
                raise
            await refuse_unavailable(ws, err, "reading the snapshot or the replay")
            return
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

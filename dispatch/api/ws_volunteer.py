"""The volunteer socket, ``/v1/ws/volunteer``: a SHOUT volunteer's alerts and answers.

A volunteer token opens this socket and nothing else. On connect the volunteer gets a
snapshot (their record and active alerts), then an ``alert`` message each time one of
their alerts changes, told as ``dispatch.volunteers.views`` decides (rounded location
before accepting, exact after). There is no replay: a reconnecting volunteer's snapshot
holds everything still active. Authentication is the other sockets' (``ws_auth``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any, Literal, cast

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, ValidationError

from dispatch.api.errors import error_code
from dispatch.api.ws_auth import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    authenticate_socket,
    refuse,
    refuse_at_capacity,
    refuse_unavailable,
)
from dispatch.api.ws_frames import FrameError, decode_frame, error_message
from dispatch.errors import DispatchError
from dispatch.hub import Message, Outgoing
from dispatch.retry import in_transaction
from dispatch.services import Services
from dispatch.transient import is_transient
from dispatch.volunteers import alerts, store
from dispatch.volunteers.views import volunteer_view
from geo.points import GeoPoint, InvalidCoordinate

router = APIRouter()
log = logging.getLogger(__name__)


class _Command(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Plain(_Command):
    """A command with no fields."""

    type: Literal["ping", "opt_out", "opt_in", "delete_data"]


class Availability(_Command):
    """The volunteer can (or cannot) answer alerts now."""

    type: Literal["availability"]
    available: StrictBool


class Position(_Command):
    """Where the volunteer is (the app sends it while available)."""

    type: Literal["location"]
    lat: float
    lon: float
    accuracy_m: float | None = None


class Answer(_Command):
    """The volunteer's answer to an alert, or their word that they are done there."""

    type: Literal["accept", "decline", "done"]
    alert_id: StrictInt


Command = Plain | Availability | Position | Answer

_MODELS: dict[str, type[_Command]] = {
    "ping": Plain,
    "opt_out": Plain,
    "opt_in": Plain,
    "delete_data": Plain,
    "availability": Availability,
    "location": Position,
    "accept": Answer,
    "decline": Answer,
    "done": Answer,
}
_ANSWERED = {"accept": "accepted", "decline": "declined", "done": "done"}


def parse_command(frame: Mapping[str, Any]) -> Command:
    """The volunteer command in a frame; FrameError otherwise."""
    data = decode_frame(frame)
    kind: str = data["type"]
    model = _MODELS.get(kind)
    if model is None:
        raise FrameError("unknown_type", f"message type {kind[:64]!r} is not understood here", kind)
    try:
        return cast(Command, model.model_validate(data))  # one of _MODELS' classes
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise FrameError("invalid_message", f"{where}: {first['msg']}", kind) from None


class VolunteerSession:
    """One volunteer's connection."""

    def __init__(self, ws: WebSocket, services: Services, volunteer_id: str) -> None:
        self.ws = ws
        self.services = services
        self.volunteer_id = volunteer_id
        self.schema = services.settings.db_schema
        self.deleted = False
        # Their active alerts' incidents (alert id -> incident id), kept by _alert_views.
        self.following: dict[int, int] = {}
        self._lock = asyncio.Lock()

    def wants(self, message: Message) -> bool:
        """Only events about this volunteer (their alerts and record), and the moves of
        the incidents they are alerted to (their location follows)."""
        event = message.get("event") or {}
        kind = str(event.get("type", ""))
        if kind == "incident.location_updated":
            return event.get("incident_id") in self.following.values()
        return kind.startswith("volunteer.") and (
            (event.get("data") or {}).get("volunteer_id") == self.volunteer_id
        )

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message (the reader and the writer both send)."""
        async with self._lock:
            await self.ws.send_text(json.dumps(message, separators=(",", ":"), default=str))

    async def _alert_views(self, alert_id: int | None = None) -> list[dict[str, Any]]:
        alerter = self.services.volunteers
        async with self.services.pool.acquire() as conn:
            facts = await alerts.alert_facts(
                conn, self.volunteer_id, alerter.labels, alert_id=alert_id
            )
        for fact in facts:
            if fact.state in ("alerted", "accepted"):
                self.following[fact.alert_id] = fact.incident_id
            else:
                self.following.pop(fact.alert_id, None)
        return [volunteer_view(f, grid_m=alerter.policy.approx_grid_m) for f in facts]

    async def _self(self) -> dict[str, Any]:
        async with self.services.pool.acquire() as conn:
            return store.self_view(await store.get(conn, self.volunteer_id))

    async def send_snapshot(self) -> None:
        """The volunteer's record and active alerts."""
        await self.send(
            {
                "type": "snapshot",
                "volunteer": await self._self(),
                "alerts": await self._alert_views(),
            }
        )

    async def pump(self, queue: asyncio.Queue[Outgoing]) -> None:
        """Turn this volunteer's events into what they may be told."""
        while True:
            item = await queue.get()
            if item.position is None:
                continue  # the fleet's positions reach every subscriber; not for volunteers
            message = json.loads(item.text)
            if message.get("type") != "event":
                continue
            event = message["event"]
            data = event.get("data") or {}
            if event["type"] == "volunteer.changed":
                if data.get("deleted"):
                    self.deleted = True
                    return
                await self.send({"type": "volunteer", "volunteer": await self._self()})
            elif event["type"] == "incident.location_updated":
                moved = [a for a, i in self.following.items() if i == event["incident_id"]]
                for alert_id in moved:
                    for view in await self._alert_views(alert_id):
                        await self.send({"type": "alert", "alert": view})
            elif "alert_id" in data:
                for view in await self._alert_views(int(data["alert_id"])):
                    await self.send({"type": "alert", "alert": view})

    async def listen(self) -> None:
        """Handle the volunteer's commands until they leave or delete their data."""
        while not self.deleted:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(frame.get("code", 1000))
            try:
                command = parse_command(frame)
            except FrameError as err:
                await self.send(err.message())
                continue
            try:
                await self.handle(command)
            except DispatchError as err:
                await self.send(error_message(error_code(err), str(err), request=command.type))
            except Exception as err:
                if not is_transient(err):
                    log.exception("volunteer socket %s failed", command.type)
                    detail = f"the server failed on this {command.type} (a bug, logged)"
                    await self.send(error_message("internal_error", detail, request=command.type))
                    continue
                detail = (
                    f"the {command.type} was not applied: the server cannot reach its"
                    " database; send it again in a few seconds"
                )
                await self.send(error_message("unavailable", detail, request=command.type))

    async def handle(self, command: Command) -> None:
        """One command."""
        me, schema, actor = self.volunteer_id, self.schema, f"volunteer:{self.volunteer_id}"
        if command.type == "ping":
            await self.send({"type": "pong"})
        elif isinstance(command, Position):
            try:
                point = GeoPoint(lat=command.lat, lon=command.lon)
            except InvalidCoordinate as err:
                await self.send(error_message("invalid_location", str(err), request="location"))
                return
            async with self.services.pool.acquire() as conn:
                await store.record_position(conn, me, point)
        elif isinstance(command, Availability):
            await in_transaction(
                self.services.pool,
                lambda conn: store.set_available(conn, schema, me, command.available, actor=actor),
            )
            self.services.volunteers.wake()
            await self.send(
                {"type": "ack", "request": command.type, "volunteer": await self._self()}
            )
        elif isinstance(command, Answer):
            alert_id = await in_transaction(
                self.services.pool,
                lambda conn: alerts.respond(
                    conn, schema, me, command.alert_id, _ANSWERED[command.type]
                ),
            )
            views = await self._alert_views(alert_id)
            await self.send({"type": "ack", "request": command.type, "alert": views[0]})
        elif command.type in ("opt_out", "opt_in"):
            opted_out = command.type == "opt_out"
            await in_transaction(
                self.services.pool,
                lambda conn: store.set_opted_out(conn, schema, me, opted_out, actor=actor),
            )
            await self.send(
                {"type": "ack", "request": command.type, "volunteer": await self._self()}
            )
        elif command.type == "delete_data":
            await in_transaction(
                self.services.pool, lambda conn: store.delete(conn, schema, me, actor=actor)
            )
            self.deleted = True


async def _serve(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    if not services.websockets.try_acquire():
        await refuse_at_capacity(ws, services.websockets.limit)
        return
    try:
        await ws.accept()
        authenticated = await authenticate_socket(ws, services, "volunteer")
        if authenticated is not None:
            await _session(ws, services, authenticated[0].name)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("volunteer socket failed")
        error = error_message(
            "internal_error", "the server failed on this connection (a bug, logged); reconnect"
        )
        await refuse(ws, error, CLOSE_INTERNAL_ERROR, "internal error")
    finally:
        services.websockets.release()


async def _session(ws: WebSocket, services: Services, volunteer_id: str) -> None:
    session = VolunteerSession(ws, services, volunteer_id)
    # Subscribed before the snapshot: a change in between arrives after it, never lost.
    subscriber = services.hub.subscribe(
        session.wants, services.settings.ws_queue_size, filtered=True
    )
    connected = services.metrics.websocket_clients.labels("volunteer")
    connected.inc()
    tasks: list[asyncio.Task[Any]] = []
    try:
        try:
            await session.send_snapshot()
        except DispatchError:
            return  # deleted between the token check and now
        except Exception as err:
            if not is_transient(err):
                raise
            await refuse_unavailable(ws, err, "reading the volunteer's alerts")
            return
        overflow = asyncio.create_task(subscriber.overflowed.wait())
        tasks = [
            asyncio.create_task(session.pump(subscriber.queue)),
            asyncio.create_task(session.listen()),
            overflow,
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(
                result, WebSocketDisconnect | RuntimeError | OSError
            ):
                raise result
        if session.deleted:
            # The token no longer exists: the client must not try to reconnect with it.
            detail = "this volunteer's data was deleted; the token is no longer valid"
            await refuse(ws, {"type": "deleted", "detail": detail}, CLOSE_UNAUTHORIZED, "deleted")
        elif overflow.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(CLOSE_TOO_SLOW, "too far behind; reconnect"), 2.0)
    finally:
        connected.dec()
        services.hub.unsubscribe(subscriber)
        for task in tasks:
            task.cancel()


@router.websocket("/v1/ws/volunteer")
async def volunteer_socket(ws: WebSocket) -> None:
    """A SHOUT volunteer's alerts and answers (volunteer token)."""
    await _serve(ws)

"""Client websocket frames: the one place a frame becomes a typed command, or an error.

Whatever a client sends (binary, oversized, invalid or deeply nested JSON, a JSON value
that is not an object, an unknown type, missing or mistyped fields, NUL characters) ends
here as a :class:`FrameError` the session answers with an ``error`` message, so one
hostile or broken client never costs its own socket, let alone anyone else's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, TypeGuard, cast

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

from dispatch.events import parse_position

# Commands are a few hundred bytes; anything bigger is a broken or hostile client. Frames
# past uvicorn's transport limit (ws_max_size: 1 MiB under `erss serve`) never reach us: the
# server closes those with 1009.
MAX_FRAME_CHARS = 64 * 1024
# No command nests at all; a limit well above that keeps the walk below cheap.
MAX_DEPTH = 8
# How much of a client-chosen type name is echoed back in an error.
_ECHO_CHARS = 64


def error_message(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The ``error`` message of both sockets.

    ``error`` is the name the REST bodies use; ``code`` carries the same value for
    clients written before ``error`` was added.
    """
    return {"type": "error", "error": code, "code": code, "detail": detail, **extra}


class FrameError(Exception):
    """A client frame that is not a command this socket understands."""

    def __init__(self, code: str, detail: str, request: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.request = request[:_ECHO_CHARS] if request is not None else None

    def message(self) -> dict[str, Any]:
        """The error message that answers the frame."""
        extra = {"request": self.request} if self.request is not None else {}
        return error_message(self.code, self.detail, **extra)


class _Command(BaseModel):
    # Unknown fields are ignored so that newer clients can talk to older servers.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Auth(_Command):
    """The first message of a client that cannot put its token in a header."""

    type: Literal["auth"]
    token: StrictStr
    after: StrictStr | None = None


class Ping(_Command):
    """Liveness check; answered with ``pong``."""

    type: Literal["ping"]


class Resume(_Command):
    """Replay every event after ``after``, then continue live."""

    type: Literal["resume"]
    after: StrictStr

    @property
    def position(self) -> int:
        """``after`` as a position (checked by :func:`parse_frame`)."""
        return parse_position(self.after)


class Respond(_Command):
    """An MDT's answer to an offer."""

    type: Literal["accept", "decline"]
    assignment_id: StrictInt


class StatusReport(_Command):
    """A crew status change."""

    type: Literal["status"]
    status: StrictStr


class LocationPing(_Command):
    """An MDT's AVL ping."""

    type: Literal["location"]
    lat: float
    lon: float
    accuracy_m: float | None = None
    # Strict numbers (a latitude sent as a string is an error), but the time arrives as
    # ISO 8601 text, which strict mode would refuse outside JSON parsing.
    time: Annotated[AwareDatetime | None, Field(strict=False)] = None


Command = Auth | Ping | Resume | Respond | StatusReport | LocationPing

_MODELS: dict[str, type[_Command]] = {
    "auth": Auth,
    "ping": Ping,
    "resume": Resume,
    "accept": Respond,
    "decline": Respond,
    "status": StatusReport,
    "location": LocationPing,
}

CONSOLE_COMMANDS = frozenset({"auth", "ping", "resume"})
MDT_COMMANDS = CONSOLE_COMMANDS | {"accept", "decline", "status", "location"}


def _first_error(err: ValidationError) -> str:
    first = err.errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def _check_values(value: Any) -> None:
    """Refuse nesting past MAX_DEPTH, and text PostgreSQL cannot store (NUL, lone
    surrogates), before any of it reaches a handler or a query."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise FrameError("invalid_message", "text may not contain NUL (\\u0000)")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise FrameError(
                    "invalid_message", "text contains a lone UTF-16 surrogate (\\ud800-\\udfff)"
                ) from None
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise FrameError("invalid_message", f"JSON nested deeper than {MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _load(frame: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object with a string ``type`` in an ASGI ``websocket.receive`` message,
    checked for size and depth (not yet its values); FrameError otherwise."""
    text = frame.get("text")
    if not isinstance(text, str):
        raise FrameError("binary_frame", "binary frames are not understood; send JSON as text")
    if len(text) > MAX_FRAME_CHARS:
        raise FrameError(
            "message_too_large",
            f"a message is at most {MAX_FRAME_CHARS} characters; this one has {len(text)}",
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise FrameError("invalid_json", f"message is not JSON: {err}") from None
    except RecursionError:
        # The C decoder gives up past the interpreter's recursion limit; the socket
        # must not go with it.
        raise FrameError("invalid_message", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise FrameError("invalid_message", "a message is a JSON object with a string type")
    return data


def decode_frame(frame: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object with a string ``type`` in an ASGI ``websocket.receive`` message,
    checked for size, depth and storable text; FrameError otherwise."""
    data = _load(frame)
    _check_values(data)
    return data


# The fields of an AVL ping, and the one time format MDTs send (RFC 3339 with an
# offset). A ping that has exactly these, well typed, takes the short path below; any
# other (an extra field, another time format, a bad value) takes the general one, so
# what is accepted and every error message stay those of LocationPing.
_PING_FIELDS = frozenset({"type", "lat", "lon", "accuracy_m", "time"})
_PING_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)", re.ASCII)


def _number(value: object) -> TypeGuard[float]:
    # Strict, as LocationPing: not bool, not text; an integer too long for a float
    # is left to the general path.
    return type(value) is float or (type(value) is int and -(2**53) < value < 2**53)


def _quick_ping(data: dict[str, Any]) -> LocationPing | None:
    """The ping ``data`` holds, without the general path; None to take that path.

    MDTs send thousands a second, and pydantic plus the walk over every value cost
    several times the rest of a ping's handling.
    """
    if not data.keys() <= _PING_FIELDS:
        return None
    lat, lon = data.get("lat"), data.get("lon")
    accuracy, text = data.get("accuracy_m"), data.get("time")
    if not (_number(lat) and _number(lon)) or not (accuracy is None or _number(accuracy)):
        return None
    time = None
    if text is not None:
        if type(text) is not str or not _PING_TIME.fullmatch(text):
            return None
        try:
            time = datetime.fromisoformat(text)
        except ValueError:
            return None
    return LocationPing.model_construct(
        type="location",
        lat=float(lat),
        lon=float(lon),
        accuracy_m=None if accuracy is None else float(accuracy),
        time=time,
    )


def parse_frame(frame: Mapping[str, Any], allowed: Collection[str]) -> Command:
    """The command in an ASGI ``websocket.receive`` message; FrameError otherwise.

    ``allowed`` is the set of command types this socket accepts at this point.
    """
    data = _load(frame)
    kind: str = data["type"]
    if kind == "location" and kind in allowed:
        ping = _quick_ping(data)
        if ping is not None:
            return ping
    _check_values(data)
    model = _MODELS.get(kind) if kind in allowed else None
    if model is None:
        raise FrameError(
            "unknown_type",
            f"message type {kind[:_ECHO_CHARS]!r} is not understood here",
            request=kind,
        )
    try:
        command = model.model_validate(data)
    except ValidationError as err:
        raise FrameError("invalid_message", _first_error(err), request=kind) from None
    if isinstance(command, Resume):
        try:
            parse_position(command.after)
        except ValueError as err:
            raise FrameError("invalid_position", str(err), request=kind) from None
    return cast(Command, command)  # one of _MODELS' classes, which is what Command lists

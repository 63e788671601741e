"""Who may open a websocket: room on this instance, and a token from a header,
``?token=``, or a first message.

Browsers cannot set headers on a websocket and a token in the URL ends up in proxies'
and servers' access logs, so a client may send its token as the first message instead:
``{"type": "auth", "token": "..."}``, within :data:`AUTH_TIMEOUT_S` of connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from dispatch.api.deps import bearer_token
from dispatch.api.ws_frames import Auth, FrameError, error_message, parse_frame
from dispatch.auth import Principal, authenticate
from dispatch.errors import Unauthorized
from dispatch.services import Services
from dispatch.transient import is_transient

log = logging.getLogger(__name__)

# Close codes (docs/protocol.md).
CLOSE_UNAUTHORIZED = 4401  # bad, missing or late token; a token of the other socket
CLOSE_BAD_REQUEST = 4400  # ?after= (or the auth message's after) is not a position
CLOSE_TOO_SLOW = 4008  # the client's queue overflowed; reconnect and resume
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: at the websocket limit, or PostgreSQL/Redis down
CLOSE_INTERNAL_ERROR = 1011  # RFC 6455: a bug on the server's side (logged)

AUTH_TIMEOUT_S = 5.0


async def refuse(ws: WebSocket, error: dict[str, Any], code: int, reason: str) -> None:
    """Send ``error``, then close with ``code``; quietly, if the client already left."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await ws.send_text(json.dumps(error))
        await ws.close(code, reason)


async def refuse_unavailable(ws: WebSocket, err: BaseException, during: str) -> None:
    """Close with 1013 because PostgreSQL or Redis failed ``during`` the connection's set-up."""
    log.warning("websocket refused during %s: %s (%s)", during, type(err).__name__, err)
    await refuse(
        ws,
        error_message(
            "unavailable",
            f"the server cannot reach its database or cache ({during}); reconnect after a"
            " pause, with backoff",
        ),
        CLOSE_TRY_AGAIN_LATER,
        "try again later",
    )


async def refuse_at_capacity(ws: WebSocket, limit: int) -> None:
    """Accept, explain and close with 1013: this instance holds ``limit`` websockets."""
    await ws.accept()
    log.warning("websocket refused: this instance holds its limit of %d", limit)
    error = error_message(
        "at_capacity",
        f"this server holds its limit of {limit} websockets;"
        " reconnect after a pause (another instance may have room)",
    )
    await refuse(ws, error, CLOSE_TRY_AGAIN_LATER, "at capacity")


async def _auth_message(ws: WebSocket) -> Auth | None:
    """The first message, which must be ``auth``; None once the socket has been refused."""
    hint = 'send {"type": "auth", "token": "<token>"} first, or an Authorization header'
    try:
        async with asyncio.timeout(AUTH_TIMEOUT_S):
            frame = await ws.receive()
    except TimeoutError:
        detail = f"no token and no auth message within {AUTH_TIMEOUT_S:g} s: {hint}"
    else:
        if frame["type"] == "websocket.disconnect":
            return None
        try:
            command = parse_frame(frame, {"auth"})
        except FrameError as err:
            detail = f"{err.detail}; {hint}"
        else:
            if isinstance(command, Auth):  # the only type allowed here
                return command
            detail = hint
    await refuse(ws, error_message("Unauthorized", detail), CLOSE_UNAUTHORIZED, "unauthorized")
    return None


async def authenticate_socket(
    ws: WebSocket, services: Services, kind: str
) -> tuple[Principal, str | None] | None:
    """The principal of an accepted socket and its ``after`` text, if any.

    None means the socket has been answered and closed: 4401 for a missing, wrong or late
    token (an operator token on the MDT socket is as wrong as a made-up one), 1013 when
    the token could not be checked because PostgreSQL is unavailable.
    """
    token = bearer_token(ws.headers.get("authorization")) or ws.query_params.get("token")
    after = ws.query_params.get("after")
    if not token:
        auth = await _auth_message(ws)
        if auth is None:
            return None
        token, after = auth.token, auth.after or after
    try:
        principal = await authenticate(services.pool, token, kind=kind)
    except Unauthorized as err:
        await refuse(
            ws, error_message("Unauthorized", str(err)), CLOSE_UNAUTHORIZED, "unauthorized"
        )
        return None
    except Exception as err:
        if not is_transient(err):
            raise
        await refuse_unavailable(ws, err, "checking the token")
        return None
    return principal, after

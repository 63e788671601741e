"""The last answer an HTTP request gets when a route failed with no handled error.

An outage (PostgreSQL or Redis unreachable: ``dispatch.transient``) is a ``503`` with
``Retry-After``, so a gateway retries; anything else is a bug and a ``500``. Both use the
one error body and ``Connection: close``: the server, not the client, decides the
keep-alive connection is not to be trusted, and says so, so the client's next request
opens a fresh one instead of failing on a connection dropped under it.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.transient import is_transient

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2


def failure_body(err: BaseException) -> tuple[int, dict[str, str], dict[str, str]]:
    """Status, JSON body and extra headers for an unhandled failure."""
    if is_transient(err):
        return (
            503,
            {
                "error": "Unavailable",
                "detail": "the dispatch store is unreachable for a moment; retry the same"
                " request (same Idempotency-Key) after Retry-After seconds",
            },
            {"retry-after": str(RETRY_AFTER_S)},
        )
    return (
        500,
        {
            "error": "InternalError",
            "detail": "the server failed on this request; it was logged. Retrying the same"
            " request is safe",
        },
        {},
    )


class FailureMiddleware:
    """Pure ASGI middleware: an exception that escaped every handler becomes the JSON
    answer above instead of uvicorn's plain-text 500 and a dropped connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as err:
            status, body, headers = failure_body(err)
            if status == 503:
                log.warning(
                    "%s %s: store unavailable (%s)",
                    scope.get("method"),
                    scope.get("path"),
                    type(err).__name__,
                )
            else:
                log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if started:
                # Half an answer is already out: nothing sensible can follow it.
                raise
            payload = json.dumps(body).encode()
            raw_headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
                *((k.encode(), v.encode()) for k, v in headers.items()),
            ]
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": payload})

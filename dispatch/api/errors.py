"""Where errors become HTTP statuses and websocket messages: one place, one mapping."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from dispatch.errors import (
    DispatchError,
    IdempotencyConflict,
    IncidentNotLocated,
    InvalidTransition,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnknownIncidentType,
)
from dispatch.ratelimit import RateLimited

# First match wins; anything else the core raises on purpose is a 400.
_STATUSES: tuple[tuple[type[DispatchError], int], ...] = (
    (Unauthorized, 401),
    (NotFound, 404),
    (IdempotencyConflict, 409),
    (InvalidTransition, 409),
    (IncidentNotLocated, 409),
    (PayloadTooLarge, 413),
    (MalformedRequest, 422),
    (UnknownIncidentType, 422),
    (RateLimited, 429),
)


def http_status(err: DispatchError) -> int:
    """The HTTP status for a core error."""
    return next((status for kind, status in _STATUSES if isinstance(err, kind)), 400)


def error_code(err: Exception) -> str:
    """A stable machine-readable name for an error, used in bodies and ws messages."""
    return type(err).__name__


def install_error_handlers(app: FastAPI) -> None:
    """Map the error tree onto JSON answers."""

    async def on_dispatch_error(_request: Request, err: Exception) -> JSONResponse:
        if not isinstance(err, DispatchError):  # pragma: no cover - registered for it only
            raise err
        headers = None
        if isinstance(err, Unauthorized):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(err, RateLimited):
            headers = {"Retry-After": str(err.retry_after_s)}
        detail = err.detail if isinstance(err, MalformedRequest) else str(err)
        return JSONResponse(
            {"error": error_code(err), "detail": detail},
            status_code=http_status(err),
            headers=headers,
        )

    app.add_exception_handler(DispatchError, on_dispatch_error)

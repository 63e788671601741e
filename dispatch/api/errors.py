"""Where errors become HTTP statuses and websocket messages: one place, one mapping."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from dispatch.errors import (
    DispatchError,
    IdempotencyConflict,
    IncidentNotLocated,
    InvalidTransition,
    NotFound,
    Unauthorized,
    UnknownIncidentType,
)
from gateways.webhook import MalformedRequest


def http_status(err: DispatchError) -> int:
    """The HTTP status for a core error."""
    if isinstance(err, Unauthorized):
        return 401
    if isinstance(err, NotFound):
        return 404
    if isinstance(err, IdempotencyConflict | InvalidTransition | IncidentNotLocated):
        return 409
    if isinstance(err, UnknownIncidentType):
        return 422
    return 400


def error_code(err: Exception) -> str:
    """A stable machine-readable name for an error, used in bodies and ws messages."""
    return type(err).__name__


def install_error_handlers(app: FastAPI) -> None:
    """Map the error tree onto JSON answers."""

    async def on_dispatch_error(_request: Request, err: Exception) -> JSONResponse:
        if not isinstance(err, DispatchError):  # pragma: no cover - registered for it only
            raise err
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(err, Unauthorized) else None
        return JSONResponse(
            {"error": error_code(err), "detail": str(err)},
            status_code=http_status(err),
            headers=headers,
        )

    async def on_malformed(_request: Request, err: Exception) -> JSONResponse:
        detail = err.detail if isinstance(err, MalformedRequest) else str(err)
        return JSONResponse({"error": "MalformedRequest", "detail": detail}, status_code=422)

    app.add_exception_handler(DispatchError, on_dispatch_error)
    app.add_exception_handler(MalformedRequest, on_malformed)

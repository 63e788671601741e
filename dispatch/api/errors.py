"""Where errors become HTTP statuses and websocket messages: one place, one mapping.

Every REST answer that is not a success has one body, ``ErrorBody``:
``{"error": "<type>", "detail": "<what to do>"}``, plus ``"fields"`` (each field and
why) for a request that did not validate. That holds for the core's errors, for
FastAPI's own validation (422), and for Starlette's unknown route (404) and wrong
method (405).
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

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

# Starlette's own refusals, named like the core's errors.
_HTTP_NAMES = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}


class FieldError(BaseModel):
    """One field of a request that did not validate, and why."""

    loc: list[str | int] = Field(description='Where: e.g. ["body", "reason"] or ["path", "id"]')
    msg: str = Field(description="Why, in words")
    type: str = Field(description="A machine-readable kind, e.g. missing, less_than_equal")


class ErrorBody(BaseModel):
    """The one error body of every REST answer that is not a success."""

    error: str = Field(description="A stable name of the error, e.g. NotFound, MalformedRequest")
    detail: str = Field(description="What went wrong and what to do about it")
    fields: list[FieldError] | None = Field(
        default=None, description="For a request that did not validate: each field and why"
    )


def http_status(err: DispatchError) -> int:
    """The HTTP status for a core error."""
    return next((status for kind, status in _STATUSES if isinstance(err, kind)), 400)


def error_code(err: Exception) -> str:
    """A stable machine-readable name for an error, used in bodies and ws messages."""
    return type(err).__name__


def field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic-style errors as ``fields`` entries: location, message and kind only.

    The offending input is never echoed: it may be what broke the request (a NUL, a lone
    surrogate that cannot even be encoded as JSON) or something secret.
    """
    return [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "invalid")),
        }
        for e in errors
    ]


def fields_sentence(fields: Sequence[dict[str, Any]]) -> str:
    """A one-line summary of ``fields`` for ``detail``, naming each field."""
    parts = [
        f"{'.'.join(str(p) for p in f['loc'][1:] or f['loc']) or 'body'}: {f['msg']}"
        for f in fields[:5]
    ]
    more = f" (and {len(fields) - 5} more)" if len(fields) > 5 else ""
    return "the request is malformed; fix " + "; ".join(parts) + more


def error_body(
    error: str, detail: str, fields: Sequence[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The JSON of an ``ErrorBody``."""
    body: dict[str, Any] = {"error": error, "detail": detail}
    if fields is not None:
        body["fields"] = list(fields)
    return body


# The answers every operator route documents (OpenAPI), with the one body.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No operator token: none, unknown, or a unit's"},
    404: {
        "model": ErrorBody,
        "description": "No such resource, or not on the caller's desk (the same answer)",
    },
    422: {"model": ErrorBody, "description": "The request is malformed; nothing was written"},
}
# Actions add the refusal of a state that does not allow them.
ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    409: {"model": ErrorBody, "description": "The current state does not allow the change"},
}


def install_error_handlers(app: FastAPI) -> None:
    """Map the error tree, FastAPI's validation and Starlette's refusals onto
    ``ErrorBody`` answers."""

    async def on_dispatch_error(_request: Request, err: Exception) -> JSONResponse:
        if not isinstance(err, DispatchError):  # pragma: no cover - registered for it only
            raise err
        headers = None
        if isinstance(err, Unauthorized):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(err, RateLimited):
            headers = {"Retry-After": str(err.retry_after_s)}
        if isinstance(err, MalformedRequest):
            fields = field_errors(err.detail)
            body = error_body(error_code(err), fields_sentence(fields), fields)
        elif isinstance(err, UnknownIncidentType):
            body = error_body(
                error_code(err),
                str(err),
                [{"loc": ["body", "type"], "msg": str(err), "type": "unknown_incident_type"}],
            )
        else:
            body = error_body(error_code(err), str(err))
        return JSONResponse(body, status_code=http_status(err), headers=headers)

    async def on_validation_error(_request: Request, err: Exception) -> JSONResponse:
        if not isinstance(err, RequestValidationError):  # pragma: no cover
            raise err
        fields = field_errors(err.errors())
        return JSONResponse(
            error_body("MalformedRequest", fields_sentence(fields), fields), status_code=422
        )

    async def on_http_error(_request: Request, err: Exception) -> JSONResponse:
        if not isinstance(err, StarletteHTTPException):  # pragma: no cover
            raise err
        if err.status_code == 400:
            # FastAPI's refusal of a body it cannot decode (not UTF-8): malformed, like
            # bad JSON, so the same 422 a client already handles.
            fields = [
                {"loc": ["body"], "msg": "the body is not UTF-8 JSON", "type": "body_invalid"}
            ]
            return JSONResponse(
                error_body("MalformedRequest", fields_sentence(fields), fields), status_code=422
            )
        name = _HTTP_NAMES.get(err.status_code, "HTTPError")
        if str(err.detail) != HTTPStatus(err.status_code).phrase:
            detail = str(err.detail)  # a route's own words
        elif err.status_code == 404:
            detail = "no such route; the operator API is under /v1 (see /docs)"
        elif err.status_code == 405:
            detail = "this route does not take that method; the Allow header lists those it takes"
        else:
            detail = str(err.detail)
        return JSONResponse(
            error_body(name, detail), status_code=err.status_code, headers=err.headers
        )

    app.add_exception_handler(DispatchError, on_dispatch_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)

"""Typed FastAPI dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from dispatch.auth import Principal, authenticate
from dispatch.services import Services


async def get_services(request: Request) -> Services:
    """The app's services (async: FastAPI runs a plain ``def`` dependency in its
    thread pool, a thread hop on every request for an attribute read)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


# Only to put the bearer scheme in the OpenAPI document (clients and schemathesis learn
# how to authenticate from it); the header is read by ``bearer_token``, the same parser
# the websockets use, and a missing token is our own 401, not FastAPI's.
_operator_scheme = HTTPBearer(
    scheme_name="OperatorToken",
    description="An operator's token (a unit's MDT token is refused with 401)",
    auto_error=False,
)


async def current_operator(
    request: Request,
    services: ServicesDep,
    _documented: Annotated[object, Depends(_operator_scheme)] = None,
) -> Principal:
    """The operator behind the request's bearer token (401 otherwise, a unit's MDT
    token included: it is not an operator token)."""
    token = bearer_token(request.headers.get("authorization"))
    return await authenticate(services.pool, token, kind="operator")


OperatorDep = Annotated[Principal, Depends(current_operator)]

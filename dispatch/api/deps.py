"""Typed FastAPI dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from dispatch.auth import Principal, authenticate
from dispatch.services import Services


def get_services(request: Request) -> Services:
    """The app's services."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


async def current_operator(request: Request, services: ServicesDep) -> Principal:
    """The operator behind the request's bearer token (401 otherwise)."""
    token = bearer_token(request.headers.get("authorization"))
    return await authenticate(services.pool, token, kind="operator")


OperatorDep = Annotated[Principal, Depends(current_operator)]

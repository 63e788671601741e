"""What every gateway endpoint shares: signature check, body parsing, the 202 answer."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from dispatch.errors import MalformedRequest, PayloadTooLarge, Unauthorized
from dispatch.intake import IncidentReport
from dispatch.services import Services
from gateways.signing import SignatureError, verify

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class SignedDelivery:
    """A delivery whose signature checked out."""

    gateway_id: str
    channel: str
    body: bytes
    idempotency_key: str

    @property
    def body_sha256(self) -> str:
        """Fingerprint of the body, to tell a retry from a different request."""
        return hashlib.sha256(self.body).hexdigest()

    def parse(self, model: type[ModelT]) -> ModelT:
        """Validate the JSON body against the channel's model; MalformedRequest if not."""
        try:
            return model.model_validate_json(self.body)
        except ValidationError as err:
            raise MalformedRequest(
                [
                    {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                    for e in err.errors(include_url=False, include_input=False)
                ]
            ) from err


async def signed_delivery(request: Request, channel: str) -> SignedDelivery:
    """Check a gateway request's signature; Unauthorized (401) when it fails.

    Nothing is read from the body or written anywhere before the signature checks out.
    """
    services: Services = request.app.state.services
    x_erss_gateway = request.headers.get("x-erss-gateway")
    x_erss_timestamp = request.headers.get("x-erss-timestamp")
    x_erss_signature = request.headers.get("x-erss-signature")
    idempotency_key = request.headers.get("idempotency-key")
    if not (x_erss_gateway and x_erss_timestamp and x_erss_signature):
        raise Unauthorized(
            "X-ERSS-Gateway, X-ERSS-Timestamp and X-ERSS-Signature headers are required"
        )
    gateway = await services.gateway_secrets.lookup(x_erss_gateway)
    if gateway is None:
        raise Unauthorized(f"unknown gateway {x_erss_gateway!r}")
    if gateway.channel != channel:
        raise Unauthorized(f"gateway {x_erss_gateway!r} may not post to the {channel} endpoint")
    body = await _read_body(request, services.settings.gateway_max_body_bytes)
    try:
        verify(
            secrets=gateway.secrets,
            timestamp=x_erss_timestamp,
            body=body,
            signature=x_erss_signature,
            now=time.time(),
            max_skew_s=services.settings.gateway_clock_skew_s,
        )
    except SignatureError as err:
        raise Unauthorized(str(err)) from err
    # After the signature: forged requests must not use up a real gateway's allowance.
    await services.rate_limiter.check(gateway.id)
    if not idempotency_key or len(idempotency_key) > 200:
        raise MalformedRequest(
            [
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": "Idempotency-Key header is required (1 to 200 characters); a retry"
                    " of the same delivery reuses it",
                    "type": "missing",
                }
            ]
        )
    return SignedDelivery(x_erss_gateway, channel, body, idempotency_key)


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused (413) beyond ``limit`` bytes without reading all of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def delivery_for(channel: str) -> Callable[[Request], Awaitable[SignedDelivery]]:
    """A FastAPI dependency checking that a request is a signed delivery for ``channel``."""

    async def dependency(request: Request) -> SignedDelivery:
        return await signed_delivery(request, channel)

    return dependency


async def accept(
    request: Request, delivery: SignedDelivery, report: IncidentReport
) -> JSONResponse:
    """Commit the report through intake and answer 202 with its incident."""
    services: Services = request.app.state.services
    result = await services.intake.submit(
        report, idempotency_key=delivery.idempotency_key, body_sha256=delivery.body_sha256
    )
    return JSONResponse(result.to_json(), status_code=202)

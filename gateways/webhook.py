"""What every gateway endpoint shares: signature check, body parsing, the 202 answer.

A signed delivery whose envelope parses is kept whatever happens next: content that
cannot be used is dropped with a warning (``gateways.content``), and if intake fails on
the report for anything but an outage (a bug), the report is still stored, raw bytes
and all, as an escalated incident operators see, and the gateway gets its 202. Only an
outage (``dispatch.transient``) answers 503, so the gateway's retry can succeed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from dispatch.errors import IdempotencyConflict, MalformedRequest, PayloadTooLarge, Unauthorized
from dispatch.reports import IncidentReport, IntakeResult
from dispatch.services import Services
from dispatch.transient import is_transient
from gateways.content import parse_lenient
from gateways.signing import SignatureError, verify

ModelT = TypeVar("ModelT", bound=BaseModel)
log = logging.getLogger(__name__)

# What a gateway's report becomes for the core; a parser or adapter raising anything but
# MalformedRequest is a bug, and the report is then kept as unprocessable.
ReportBuilder = Callable[["SignedDelivery"], IncidentReport]
# How a report is committed: ``Intake.submit`` unless a channel has its own way (the
# vehicle gateway's tamper alerts wait for an operator).
Submit = Callable[[IncidentReport, str, str], Awaitable[IntakeResult]]


@dataclass(frozen=True, slots=True)
class SignedDelivery:
    """A delivery whose signature checked out."""

    gateway_id: str
    channel: str
    body: bytes
    idempotency_key: str
    content_type: str | None = None
    # For the AML-over-HTTPS route: the keys its body's own hmac is checked with.
    aml_keys: tuple[str, ...] = ()

    @property
    def body_sha256(self) -> str:
        """Fingerprint of the body, to tell a retry from a different request."""
        return hashlib.sha256(self.body).hexdigest()


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
        # Not echoed back: what a caller sent is never repeated in an answer.
        raise Unauthorized("unknown gateway: X-ERSS-Gateway names no registered gateway")
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
    return SignedDelivery(
        x_erss_gateway,
        channel,
        body,
        idempotency_key,
        request.headers.get("content-type"),
        gateway.aml_keys,
    )


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


def json_report(
    model: type[ModelT],
    identity: tuple[str, ...],
    adapt: Callable[[ModelT, str], IncidentReport],
) -> ReportBuilder:
    """A builder for a JSON channel: ``identity`` fields must be right (else 422), the
    rest is used where it can be, each field dropped adding a warning."""

    def build(delivery: SignedDelivery) -> IncidentReport:
        parsed = parse_lenient(delivery.body, model, identity)
        report = adapt(parsed.value, delivery.gateway_id)
        return replace(report, warnings=parsed.warnings + report.warnings)

    return build


async def accept(
    request: Request,
    delivery: SignedDelivery,
    build: ReportBuilder,
    submit: Submit | None = None,
) -> JSONResponse:
    """Commit the delivery's report through intake (or ``submit``) and answer 202 with
    its incident."""
    services: Services = request.app.state.services
    try:
        report = build(delivery)
    except MalformedRequest:
        raise
    except Exception as err:
        log.exception("gateway %s: reading a signed delivery failed", delivery.gateway_id)
        return await _keep_unprocessable(services, delivery, _bare_report(delivery), err)
    report = replace(report, raw=delivery.body, raw_content_type=delivery.content_type)
    try:
        if submit is None:
            result = await services.intake.submit(
                report, idempotency_key=delivery.idempotency_key, body_sha256=delivery.body_sha256
            )
        else:
            result = await submit(report, delivery.idempotency_key, delivery.body_sha256)
    except IdempotencyConflict:
        raise
    except Exception as err:
        if is_transient(err):
            raise
        log.exception("gateway %s: intake failed on a report", delivery.gateway_id)
        return await _keep_unprocessable(services, delivery, report, err)
    return JSONResponse(result.to_json(), status_code=202)


async def _keep_unprocessable(
    services: Services, delivery: SignedDelivery, report: IncidentReport, err: Exception
) -> JSONResponse:
    result = await services.intake.keep_unprocessable(
        replace(report, raw=delivery.body, raw_content_type=delivery.content_type),
        idempotency_key=delivery.idempotency_key,
        body_sha256=delivery.body_sha256,
        error=f"{type(err).__name__}: {err}"[:300],
    )
    return JSONResponse(result.to_json(), status_code=202)


def _bare_report(delivery: SignedDelivery) -> IncidentReport:
    """What is known of a delivery nobody could read: who sent it and its bytes."""
    return IncidentReport(
        channel=delivery.channel,
        gateway_id=delivery.gateway_id,
        external_id=f"sha256:{delivery.body_sha256}",
        sender="unknown",
        incident_type="panic" if delivery.channel == "panic" else "other",
        location=None,
        payload={},
    )

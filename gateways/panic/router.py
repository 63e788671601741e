"""HTTP route for panic triggers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from dispatch.services import Services
from gateways.panic.adapter import to_report
from gateways.panic.schema import PanicTrigger
from gateways.webhook import SignedDelivery, signed_delivery

router = APIRouter(tags=["gateways"])


async def _panic_delivery(request: Request) -> SignedDelivery:
    return await signed_delivery(request, "panic")


@router.post("/v1/gateways/panic", status_code=202)
async def post_panic(
    request: Request, delivery: Annotated[SignedDelivery, Depends(_panic_delivery)]
) -> JSONResponse:
    """Take an SOS trigger; 202 once its incident is committed."""
    services: Services = request.app.state.services
    trigger = delivery.parse(PanicTrigger)
    result = await services.intake.submit(
        to_report(trigger, gateway_id=delivery.gateway_id),
        idempotency_key=delivery.idempotency_key,
        body_sha256=delivery.body_sha256,
    )
    body: dict[str, Any] = result.to_json()
    return JSONResponse(body, status_code=202)

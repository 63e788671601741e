"""HTTP route for panic triggers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateways.openapi import ANSWERS, json_body
from gateways.panic.adapter import to_report
from gateways.panic.schema import PanicTrigger
from gateways.webhook import SignedDelivery, accept, delivery_for, json_report

router = APIRouter(tags=["gateways"])


@router.post(
    "/v1/gateways/panic",
    status_code=202,
    responses=ANSWERS,
    openapi_extra=json_body(PanicTrigger),
)
async def post_panic(
    request: Request, delivery: Annotated[SignedDelivery, Depends(delivery_for("panic"))]
) -> JSONResponse:
    """Take an SOS trigger; 202 once its incident is committed."""
    return await accept(request, delivery, _BUILD)


_BUILD = json_report(
    PanicTrigger, ("trigger_id", "device_id"), lambda t, gw: to_report(t, gateway_id=gw)
)

"""HTTP route for incoming 112 calls."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateways.openapi import ANSWERS, json_body
from gateways.telecom.adapter import to_report
from gateways.telecom.schema import TelecomCall
from gateways.webhook import SignedDelivery, accept, delivery_for, json_report

router = APIRouter(tags=["gateways"])


@router.post(
    "/v1/gateways/telecom/calls",
    status_code=202,
    responses=ANSWERS,
    openapi_extra=json_body(TelecomCall),
)
async def post_call(
    request: Request, delivery: Annotated[SignedDelivery, Depends(delivery_for("telecom"))]
) -> JSONResponse:
    """Take an incoming 112 call; 202 once its incident is committed."""
    return await accept(request, delivery, _BUILD)


_BUILD = json_report(TelecomCall, ("call_id", "caller"), lambda c, gw: to_report(c, gateway_id=gw))

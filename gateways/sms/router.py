"""HTTP route for SMS to 112."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateways.sms.adapter import to_report
from gateways.sms.schema import SmsMessage
from gateways.webhook import SignedDelivery, accept, delivery_for

router = APIRouter(tags=["gateways"])


@router.post("/v1/gateways/sms", status_code=202)
async def post_sms(
    request: Request, delivery: Annotated[SignedDelivery, Depends(delivery_for("sms"))]
) -> JSONResponse:
    """Take an SMS to 112 (AML or plain text); 202 once its incident is committed."""
    sms = delivery.parse(SmsMessage)
    return await accept(request, delivery, to_report(sms, gateway_id=delivery.gateway_id))

"""HTTP route for SMS to 112."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from dispatch.errors import MalformedRequest
from dispatch.reports import IncidentReport
from gateways.aml.parse import AmlError, parse_aml_https
from gateways.openapi import ANSWERS, form_body, json_body
from gateways.sms.adapter import aml_https_to_report, to_report, with_hmac_check
from gateways.sms.schema import SmsMessage
from gateways.webhook import SignedDelivery, accept, delivery_for, json_report

router = APIRouter(tags=["gateways"])


@router.post(
    "/v1/gateways/sms",
    status_code=202,
    responses=ANSWERS,
    openapi_extra=json_body(SmsMessage),
)
async def post_sms(
    request: Request, delivery: Annotated[SignedDelivery, Depends(delivery_for("sms"))]
) -> JSONResponse:
    """Take an SMS to 112 (AML or plain text); 202 once its incident is committed."""
    return await accept(request, delivery, _BUILD_SMS)


@router.post(
    "/v1/gateways/aml",
    status_code=202,
    responses=ANSWERS,
    openapi_extra=form_body(
        {
            "v": "AML version (1-3)",
            "device_number": "The phone's number (E.164): required, it identifies the caller",
            "location_latitude": "Degrees",
            "location_longitude": "Degrees",
            "location_accuracy": "Metres (radius)",
            "location_source": "gps, wifi, cell or unknown",
            "location_time": "Unix milliseconds of the fix",
            "location_certainty": "Percent",
            "hmac": "HMAC-SHA1 of the body before &hmac=, with the AML key: checked when the"
            " gateway has aml_keys configured; a mismatch is a warning, never a refusal",
        }
    ),
)
async def post_aml_https(
    request: Request, delivery: Annotated[SignedDelivery, Depends(delivery_for("sms"))]
) -> JSONResponse:
    """Take AML sent over HTTPS (ETSI TS 103 625; Android's Emergency Location Service
    form, ``application/x-www-form-urlencoded``), treated exactly like the SMS form."""
    return await accept(request, delivery, _aml_https_report)


_BUILD_SMS = json_report(
    SmsMessage, ("message_id", "from"), lambda sms, gw: to_report(sms, gateway_id=gw)
)


def _aml_https_report(delivery: SignedDelivery) -> IncidentReport:
    try:
        aml = parse_aml_https(delivery.body)
    except AmlError as err:
        raise MalformedRequest(
            [{"loc": ["body", err.field], "msg": err.reason, "type": "aml"}]
        ) from err
    if not (aml.device_number or "").strip():
        raise MalformedRequest(
            [
                {
                    "loc": ["body", "device_number"],
                    "msg": "device_number is required: it identifies the caller",
                    "type": "missing",
                }
            ]
        )
    # The HTTPS form has no message id: the same body is the same delivery.
    report = aml_https_to_report(
        aml, gateway_id=delivery.gateway_id, delivery_id=f"sha256:{delivery.body_sha256}"
    )
    return with_hmac_check(report, delivery.body, delivery.aml_keys)

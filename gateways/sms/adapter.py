"""SMS -> IncidentReport. Pure: no HTTP, no SQL."""

from __future__ import annotations

from typing import Any

from dispatch.correlate import tel_key
from dispatch.intake import IncidentReport
from gateways.aml.parse import AmlError, AmlMessage, parse_aml_sms
from gateways.numbers import number_warning
from gateways.sms.schema import SmsMessage


def to_report(sms: SmsMessage, *, gateway_id: str) -> IncidentReport:
    """Normalise an SMS: an AML SMS gives its location, any other is a text report.

    An AML SMS is reported under its sender's number (``from``), like the voice call
    it comes with; every AML field it could not use adds a warning naming the field,
    and a broken location is dropped, never guessed. A plain SMS keeps its text as
    the ``narrative`` of the payload and has no location.
    """
    warnings: list[str] = []
    if (bad_number := number_warning("from", sms.sender)) is not None:
        warnings.append(bad_number)
    text = sms.text or ""
    payload: dict[str, Any] = sms.model_dump(mode="json", by_alias=True)
    aml: AmlMessage | None
    try:
        aml = parse_aml_sms(text)
    except AmlError:
        aml = None
    if aml is None:
        payload["kind"] = "plain"
        payload["narrative"] = text
        warnings.append("plain SMS carries no location")
        if not text.strip():
            warnings.append("text: the SMS has no text")
    else:
        payload["kind"] = "aml"
        payload["aml"] = aml.to_json()
        warnings.extend(f"AML {w}" for w in aml.warnings)
        if aml.location_error is not None:
            warnings.append(f"AML location dropped: {aml.location_error}")
    return IncidentReport(
        channel="sms",
        gateway_id=gateway_id,
        external_id=sms.message_id,
        sender=sms.sender,
        incident_type="other",
        location=aml.location if aml is not None else None,
        payload=payload,
        warnings=tuple(warnings),
        sender_keys=tuple(k for k in (tel_key(sms.sender),) if k),
    )

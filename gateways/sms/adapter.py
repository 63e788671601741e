"""SMS -> IncidentReport. Pure: no HTTP, no SQL."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dispatch.correlate import tel_key
from dispatch.reports import IncidentReport
from dispatch.triage import suggest
from gateways.aml.parse import AmlError, AmlMessage, parse_aml_sms, verify_aml_https_hmac
from gateways.numbers import number_warning
from gateways.sms.schema import SmsMessage


def to_report(sms: SmsMessage, *, gateway_id: str) -> IncidentReport:
    """Normalise an SMS: an AML SMS gives its location, any other is a text report.

    An AML SMS is reported under its sender's number (``from``), like the voice call
    it comes with; every AML field it could not use adds a warning naming the field,
    and a broken location is dropped, never guessed. A plain SMS keeps its text as
    the ``narrative`` of the payload and has no location; what its words suggest
    (``dispatch.triage``) becomes its type, kept as ``triage`` in the payload.
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
    incident_type = "other"
    if aml is None:
        payload["kind"] = "plain"
        payload["narrative"] = text
        warnings.append("plain SMS carries no location")
        if not text.strip():
            warnings.append("text: the SMS has no text")
        if (suggestion := suggest(text)) is not None:
            # A suggestion an operator confirms; intake only ever raises priority with it.
            incident_type = suggestion.type
            payload["triage"] = suggestion.to_json()
    else:
        payload["kind"] = "aml"
        warnings.extend(_aml_findings(aml, payload))
    return IncidentReport(
        channel="sms",
        gateway_id=gateway_id,
        external_id=sms.message_id,
        sender=sms.sender,
        incident_type=incident_type,
        location=aml.location if aml is not None else None,
        payload=payload,
        warnings=tuple(warnings),
        sender_keys=tuple(k for k in (tel_key(sms.sender),) if k),
    )


def _aml_findings(aml: AmlMessage, payload: dict[str, Any]) -> list[str]:
    """Keep the AML's fields in the payload; its problems as warnings."""
    payload["aml"] = aml.to_json()
    warnings = [f"AML {w}" for w in aml.warnings]
    if aml.location_error is not None:
        warnings.append(f"AML location dropped: {aml.location_error}")
    return warnings


def aml_https_to_report(aml: AmlMessage, *, gateway_id: str, delivery_id: str) -> IncidentReport:
    """Normalise an AML HTTPS POST exactly like the SMS form, under ``device_number``.

    The HTTPS form has no message id: ``delivery_id`` (the body's fingerprint) names it.
    """
    sender = aml.device_number or ""
    warnings: list[str] = []
    if (bad_number := number_warning("device_number", sender)) is not None:
        warnings.append(bad_number)
    payload: dict[str, Any] = {"kind": "aml-https"}
    warnings.extend(_aml_findings(aml, payload))
    return IncidentReport(
        channel="sms",
        gateway_id=gateway_id,
        external_id=delivery_id,
        sender=sender,
        incident_type="other",
        location=aml.location,
        payload=payload,
        warnings=tuple(warnings),
        sender_keys=tuple(k for k in (tel_key(sender),) if k),
    )


def with_hmac_check(report: IncidentReport, body: bytes, keys: tuple[str, ...]) -> IncidentReport:
    """The AML HTTPS report with its body's own ``hmac`` checked against the gateway's
    AML keys: ``hmac_verified`` in the payload (None: no key configured, not checked);
    a mismatch warns operators, and the report is kept, location and all."""
    if not keys:
        return replace(report, payload={**report.payload, "hmac_verified": None})
    verified = any(verify_aml_https_hmac(body, key) for key in keys)
    warnings = report.warnings
    if not verified:
        warnings += (
            "hmac: the AML body's own HMAC is missing or does not match the configured AML"
            " key; the location may not come from the handset's AML service",
        )
    return replace(report, payload={**report.payload, "hmac_verified": verified}, warnings=warnings)

"""Telecom call -> IncidentReport. Pure: no HTTP, no SQL."""

from __future__ import annotations

from typing import Any

from dispatch.correlate import tel_key
from dispatch.reports import IncidentReport
from dispatch.triage import suggest
from gateways.numbers import number_warning
from gateways.telecom.pidf_lo import PidfLocation, PidfLoError, parse_pidf_lo
from gateways.telecom.schema import TelecomCall
from geo.location import InvalidLocation, Location, location_from_fix


def to_report(call: TelecomCall, *, gateway_id: str) -> IncidentReport:
    """Normalise a call; a call without a usable location still becomes an incident.

    The location is the JSON ``location`` when it is usable, else the one in
    ``pidf_lo``; each one dropped adds a warning saying why, and nothing is guessed.
    The payload keeps the whole call (the raw PIDF-LO included) and what was read
    from the PIDF-LO, its civic address among it.
    """
    warnings: list[str] = []
    if (bad_number := number_warning("caller", call.caller)) is not None:
        warnings.append(bad_number)
    location: Location | None = None
    source: str | None = None
    if call.location is not None:
        fix = call.location
        try:
            location = location_from_fix(
                lat=fix.lat,
                lon=fix.lon,
                radius_m=fix.radius_m,
                # Without a method, the operator's location is its network's (LBS).
                method=fix.method or "network",
                time=fix.time,
            )
            source = "location"
        except InvalidLocation as err:
            warnings.append(f"location dropped: {err}")
    pidf: PidfLocation | None = None
    if call.pidf_lo is not None:
        try:
            pidf = parse_pidf_lo(call.pidf_lo)
        except PidfLoError as err:
            warnings.append(f"pidf_lo dropped: {err.reason}")
        else:
            # Its warnings matter only when it is the evidence the incident relies on.
            if location is None:
                warnings.extend(f"pidf_lo: {w}" for w in pidf.warnings)
                location = pidf.location
                source = "pidf_lo" if location is not None else None
    if call.location is None and call.pidf_lo is None:
        warnings.append("location: the call carried no location")
    payload: dict[str, Any] = call.model_dump(mode="json")
    payload["location_source"] = source
    payload["pidf_lo_parsed"] = _pidf_json(pidf)
    incident_type = "other"
    if (suggestion := suggest(call.notes)) is not None:
        incident_type = suggestion.type
        payload["triage"] = suggestion.to_json()
    return IncidentReport(
        channel="telecom",
        gateway_id=gateway_id,
        external_id=call.call_id,
        sender=call.caller,
        incident_type=incident_type,
        location=location,
        payload=payload,
        warnings=tuple(warnings),
        sender_keys=tuple(k for k in (tel_key(call.caller),) if k),
        silent=call.call_state in ("silent", "dropped"),
    )


def _pidf_json(pidf: PidfLocation | None) -> dict[str, Any] | None:
    if pidf is None:
        return None
    return {
        "shape": pidf.shape,
        "civic": pidf.civic,
        "method": pidf.method,
        "confidence": pidf.confidence,
        "warnings": pidf.warnings,
    }

"""Hand-off decisions, pure: what an answer from another CAD means, when to try again,
which of our changes an originating CAD is told about, and what an inbound EIDO is as
a report. The I/O around them is ``dispatch.exchange.delivery`` and the routes."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dispatch.exchange import eido_schema
from dispatch.reports import IncidentReport
from gateways.telecom.pidf_lo import PidfLoError, parse_pidf_lo
from geo.location import Location

# What the other CAD may tell us it did with an incident we handed it.
REMOTE_STATUSES = ("accepted", "unit_assigned", "on_scene", "closed")
EIDO_PATH = "/v1/exchange/eido"
STATUS_PATH = "/v1/exchange/status"
_PHONE_URI = re.compile(r"tel:(\+?[0-9]{6,15})")

Outcome = Literal["delivered", "refused", "retry"]


def outcome_of(status_code: int | None) -> Outcome:
    """What an answer means: 2xx delivered; a 4xx other than timeout, conflict-in-flight
    and rate limit is the receiver refusing it (trying again cannot help); anything
    else (5xx, no answer: ``None``) is worth another try."""
    if status_code is None:
        return "retry"
    if 200 <= status_code < 300:
        return "delivered"
    if 400 <= status_code < 500 and status_code not in (408, 425, 429):
        return "refused"
    return "retry"


def retry_delay_s(attempts: int, *, base_s: float, cap_s: float, spread: float) -> float:
    """Seconds before try ``attempts + 1``: doubling from ``base_s`` up to ``cap_s``,
    stretched by ``spread`` (0..1, from the row's id) so that many hand-offs failing
    together do not all come back in the same second."""
    delay: float = min(cap_s, base_s * 2.0 ** max(0, attempts - 1))
    return delay * (1.0 + 0.25 * min(max(spread, 0.0), 1.0))


@dataclass(frozen=True, slots=True)
class Step:
    """What follows one try: the row's new state, when to try next, what to record."""

    state: Literal["pending", "delivered", "refused", "escalated"]
    retry_in_s: float | None
    event: str | None


def after_attempt(
    outcome: Outcome,
    attempts: int,
    *,
    max_attempts: int,
    base_s: float,
    cap_s: float,
    spread: float,
) -> Step:
    """The step after try number ``attempts`` ended with ``outcome``."""
    if outcome == "delivered":
        return Step("delivered", None, "acknowledged")
    if outcome == "refused":
        return Step("refused", None, "refused")
    if attempts >= max_attempts:
        return Step("escalated", None, "escalated")
    return Step("pending", retry_delay_s(attempts, base_s=base_s, cap_s=cap_s, spread=spread), None)


def status_update_for(
    event_type: str, data: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """The status update an originating CAD gets for one of our events on an incident it
    handed us (None: nothing it needs to hear)."""
    if event_type == "assignment.accepted":
        return "unit_assigned", {}
    if event_type == "unit.status_changed" and data.get("to") == "on_scene":
        return "on_scene", {}
    if event_type == "incident.closed":
        return "closed", {"disposition": data.get("disposition")}
    if event_type == "incident.merged":
        return "closed", {"disposition": "merged with another incident here"}
    return None


STATUS_EVENTS = ("assignment.accepted", "unit.status_changed", "incident.closed", "incident.merged")


def status_body(
    *, incident: str, status: str, at: str, unit: str | None, detail: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON of a status update sent back to the CAD that handed us ``incident``."""
    body: dict[str, Any] = {"incident": incident, "status": status, "at": at}
    if unit is not None:
        body["unit"] = unit
    body.update({k: v for k, v in detail.items() if v is not None})
    return body


@dataclass(frozen=True, slots=True)
class Inbound:
    """An EIDO from another CAD, read as a report, with what could not be used."""

    tracking_id: str
    report: IncidentReport


class EidoUnusable(ValueError):
    """An inbound document that is not an EIDO at all (no object, no ``$id``)."""


def _first(items: Any) -> Mapping[str, Any] | None:
    if isinstance(items, list) and items and isinstance(items[0], Mapping):
        return items[0]
    return None


def _location(document: Mapping[str, Any], warnings: list[str]) -> Location | None:
    components = [
        c for c in document.get("locationComponent") or [] if isinstance(c, Mapping)
    ]  # fmt: skip
    # The incident's own location first, then the caller's, then any.
    components.sort(
        key=lambda c: {"Incident": 0, "Caller": 1}.get(
            str(c.get("locationTypeDescriptionRegistryText")), 2
        )
    )
    for component in components:
        pidf = component.get("locationByValue")
        if not isinstance(pidf, str):
            continue
        try:
            parsed = parse_pidf_lo(pidf)
        except PidfLoError as err:
            warnings.append(f"locationComponent {component.get('$id')}: {err.reason}")
            continue
        warnings.extend(f"locationComponent: {w}" for w in parsed.warnings)
        if parsed.location is not None:
            return parsed.location
    if components:
        warnings.append("locationComponent: no usable location by value; placed by operators")
    return None


def inbound_report(document: Any, *, agency_id: str, known_types: Collection[str]) -> Inbound:
    """An inbound EIDO as the report intake takes. Lenient like the gateways: only a
    document with no identity is refused (EidoUnusable); what breaks the schema or
    cannot be used is a warning on the report."""
    if not isinstance(document, Mapping) or not isinstance(document.get("$id"), str):
        raise EidoUnusable('the body must be an EIDO: a JSON object with its "$id"')
    tracking_id = str(document["$id"])[:500]
    if not tracking_id.strip():
        raise EidoUnusable('the EIDO\'s "$id" is empty')
    warnings = [f"EIDO schema: {p}" for p in eido_schema.problems(document)[:5]]
    incident = document.get("incidentComponent")
    incident = incident if isinstance(incident, Mapping) else {}
    kind = str(incident.get("incidentTypeInternalCode") or "")
    common = str(incident.get("incidentTypeCommonRegistryText") or "")
    incident_type = next((k for k in (kind, common) if k in known_types), "other")
    if incident_type == "other" and (kind or common) not in ("", "other"):
        warnings.append(f"incident type {kind or common!r} is not one of ours; classify it")
    callback = _first(document.get("callbackComponent")) or {}
    uris = callback.get("callBackInformationUri") or []
    phones = [m.group(1) for u in uris if isinstance(u, str) and (m := _PHONE_URI.fullmatch(u))]
    notes = [
        str(n.get("notesActionComments"))[:4000]
        for n in document.get("notesComponent") or []
        if isinstance(n, Mapping) and n.get("notesActionComments")
    ]
    payload: dict[str, Any] = {
        "handed_over_by": agency_id,
        "tracking_id": tracking_id,
        "incident_type": kind or common or None,
        "priority": incident.get("incidentCommonPriorityNumber"),
        "notes": notes,
        "callback": phones,
    }
    location = _location(document, warnings)
    report = IncidentReport(
        channel="eido",
        gateway_id=f"agency:{agency_id}",
        external_id=tracking_id,
        sender=phones[0] if phones else f"agency:{agency_id}",
        incident_type=incident_type,
        location=location,
        payload=payload,
        warnings=tuple(warnings),
    )
    return Inbound(tracking_id, report)

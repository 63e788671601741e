"""An incident as an Emergency Incident Data Object (NENA-STA-021, JSON form). Pure: fed
the incident's read model (``dispatch.readmodels.incident_detail``), the units it
involves and who we are; returns the EIDO as a JSON-ready dict.

What travels: the incident (type, status, priority, disposition, merges), its location
as PIDF-LO with uncertainty and method, each report as a call with its caller and
call-back number, the units and their statuses, dispatches, operators' notes, and the
agencies involved. What does not: tokens and secrets, gateway names, report payloads
and raw deliveries, operators' names, and our row ids except inside identifiers scoped
by our agency id (``urn:emergency:uid:incidentid:<n>:<agency>``), which the receiving
CAD quotes back in its status updates.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatch.exchange.pidf import pidf_lo

EIDO_VERSION = "1.0"
_CONTEXT = {"@vocab": "./JSON-LD_Contexts/EmergencyIncidentDataObjectType.jsonld"}
# A number a call-taker can ring back (the sender of a telecom or SMS report).
_PHONE = re.compile(r"\+?[0-9]{6,15}")
# Our unit agencies as IANA urn:emergency:service:responder types (prefix left off).
_RESPONDER = {"police": "police", "ambulance": "ems", "fire": "fire"}
_RESOURCE_TYPE = {"police": "Law Enforcement", "ambulance": "EMS", "fire": "Fire"}
# Incident and unit statuses as the EIDO's registries word them.
_INCIDENT_STATUS = {
    "new": "Open",
    "awaiting_location": "Open",
    "callback": "Open",
    "queued": "Pending",
    "offered": "Pending",
    "dispatched": "Dispatched",
    "on_scene": "OnScene",
    "closed": "Closed",
    "merged": "Closed",
}
_UNIT_STATUS = {
    "available": "Available",
    "offered": "Assigned",
    "dispatched": "Dispatched",
    "en_route": "Enroute",
    "on_scene": "OnScene",
    "returning": "Returning",
    "off_duty": "OffDuty",
    "out_of_service": "OutOfService",
}
_DISPATCHED_ASSIGNMENTS = ("offered", "accepted", "completed")


@dataclass(frozen=True, slots=True)
class Origin:
    """Who issues the EIDO: our agency's domain-style id and its name."""

    agency_id: str
    name: str


@dataclass(frozen=True, slots=True)
class PartnerAgency:
    """Another agency involved: one the incident was handed to, with the hand-off's state."""

    agency_id: str
    agency_type: str
    state: str


def incident_urn(incident_id: int, agency_id: str) -> str:
    """The incident's tracking id: what the other CAD quotes back to us."""
    return f"urn:emergency:uid:incidentid:{incident_id}:{agency_id}"


def parse_incident_urn(urn: str, agency_id: str) -> int | None:
    """Our incident id in a tracking id we issued; None for anyone else's."""
    match = re.fullmatch(r"urn:emergency:uid:incidentid:([0-9]{1,18}):(.+)", urn)
    if match is None or match.group(2) != agency_id:
        return None
    return int(match.group(1))


def _component_id(agency_id: str, kind: str, local: object) -> str:
    # Stable (the same component keeps its id from one export to the next) and opaque.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"erss:{agency_id}:{kind}:{local}"))


def _ref(target: str) -> dict[str, str]:
    return {"$ref": target}


def _unit_agency_id(agency: str, origin: Origin) -> str:
    return f"{agency}.{origin.agency_id}"


def build_eido(
    incident: Mapping[str, Any],
    *,
    units: Mapping[str, Mapping[str, Any]],
    origin: Origin,
    partners: Sequence[PartnerAgency] = (),
    now: datetime,
) -> dict[str, Any]:
    """The EIDO of ``incident`` (a ``readmodels.incident_detail`` dict); ``units`` are
    the unit read models of its assignments, by id."""
    me = origin.agency_id
    stamp = now.isoformat()
    ours = _ref(me)

    def prologue(component_id: str, at: str | None = None) -> dict[str, Any]:
        return {
            "$id": component_id,
            "lastUpdateTimeStamp": at or stamp,
            "updatedByAgencyReference": ours,
        }

    incident_id = int(incident["id"])
    updated = str(incident.get("updated_at") or stamp)
    eido: dict[str, Any] = {
        **prologue(incident_urn(incident_id, me), updated),
        "eidoVersion": EIDO_VERSION,
        "issuingElementIdentification": me,
    }
    locations: list[dict[str, Any]] = []
    location = incident.get("location")
    if location:
        locations.append(
            {
                **prologue(_component_id(me, "location", incident_id), updated),
                "locationTypeDescriptionRegistryText": "Incident",
                "locationByValue": pidf_lo(
                    entity=f"pres:incident-{incident_id}@{me}",
                    device_id="incident",
                    lat=location["lat"],
                    lon=location["lon"],
                    radius_m=location.get("radius_m"),
                    method=location.get("method"),
                    at=None,
                ),
            }
        )
    calls, callbacks, persons = _calls(incident, origin, locations, prologue)
    notes = [
        {
            **prologue(_component_id(me, "note", event["id"]), event["at"]),
            "notesActionComments": event["data"].get("text", ""),
        }
        for event in incident.get("events", [])
        if event["type"] == "incident.note_added"
    ]
    resources, dispatches, unit_agencies = _units(incident, units, origin, prologue)
    status = str(incident["status"])
    summary: dict[str, Any] = {
        **prologue(_component_id(me, "incident", incident_id), updated),
        "incidentTypeCommonRegistryText": str(incident["type"]),
        "incidentTypeInternalCode": str(incident["type"]),
        "incidentStatusInternalText": [status],
        "incidentStatusCommonRegistryText": [_INCIDENT_STATUS.get(status, "Open")],
        "incidentCommonPriorityNumber": int(incident["priority"]),
        "locationReference": [_ref(loc["$id"]) for loc in locations[:1]],
        "personReference": [_ref(p["$id"]) for p in persons],
        "notesReference": [_ref(n["$id"]) for n in notes],
    }
    if incident.get("zone"):
        summary["beatOrDispatchGroupText"] = str(incident["zone"]["name"])
    if incident.get("disposition"):
        summary["dispositionComponent"] = [
            {
                **prologue(_component_id(me, "disposition", incident_id), updated),
                "dispositionCommonRegistryCode": str(incident["disposition"]),
                "dispositionPrimaryIndicator": True,
            }
        ]
    eido["incidentComponent"] = summary
    merges = _merges(incident, me, prologue)
    if merges:
        eido["mergeComponent"] = merges
    eido["agencyComponent"] = [
        {
            **prologue(me),
            "agencyRoleDescriptionRegistryText": ["CallReceiving", "Dispatching"],
            "agencyType": ["psap"],
            "incidentOwningAgencyIndicator": not any(
                p.state in ("accepted", "assigned", "on_scene") for p in partners
            ),
        },
        *(
            {
                **prologue(_unit_agency_id(agency, origin)),
                "agencyRoleDescriptionRegistryText": ["Responding"],
                "agencyType": [_RESPONDER.get(agency, agency)],
                "actingOnBehalfOfAgencyReference": [ours],
            }
            for agency in sorted(unit_agencies)
        ),
        *(
            {
                **prologue(p.agency_id),
                "agencyRoleDescriptionRegistryText": ["Responding"],
                "agencyType": [p.agency_type],
                "incidentOwningAgencyIndicator": p.state in ("accepted", "assigned", "on_scene"),
            }
            for p in partners
        ),
    ]
    for key, components in (
        ("callComponent", calls),
        ("callbackComponent", callbacks),
        ("personComponent", persons),
        ("locationComponent", locations),
        ("notesComponent", notes),
        ("emergencyResourceComponent", resources),
        ("dispatchComponent", dispatches),
    ):
        if components:
            eido[key] = components
    eido["@context"] = dict(_CONTEXT)
    return eido


def _calls(
    incident: Mapping[str, Any],
    origin: Origin,
    locations: list[dict[str, Any]],
    prologue: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Each report as a call, its caller as a person, and a call-back number if it has one."""
    me = origin.agency_id
    calls: list[dict[str, Any]] = []
    callbacks: list[dict[str, Any]] = []
    persons: list[dict[str, Any]] = []
    for report in incident.get("reports", []):
        received = str(report["received_at"])
        call_id = f"urn:emergency:uid:callid:{report['id']}:{me}"
        call: dict[str, Any] = {
            **prologue(call_id, received),
            "standardPrimaryCallType": "emergency",
            "localCallType": str(report["channel"]),
            "direction": "incoming",
            "callStartTimestamp": received,
            "callStateRegistryText": "callEnded",
        }
        person: dict[str, Any] = {
            **prologue(_component_id(me, "caller", report["id"]), received),
            "personIncidentRoleRegistryText": ["Caller"],
            "callIdentifier": [call_id],
        }
        sender = str(report.get("sender") or "")
        if _PHONE.fullmatch(sender):
            callback = {
                **prologue(_component_id(me, "callback", report["id"]), received),
                "callBackInformationUri": [f"tel:{sender}"],
            }
            callbacks.append(callback)
            call["callBackReference"] = _ref(callback["$id"])
            person["callBackReference"] = _ref(callback["$id"])
        where = report.get("location")
        if where:
            location = {
                **prologue(_component_id(me, "caller-location", report["id"]), received),
                "locationTypeDescriptionRegistryText": "Caller",
                "locationByValue": pidf_lo(
                    entity=f"pres:caller-{report['id']}@{me}",
                    device_id="caller",
                    lat=where["lat"],
                    lon=where["lon"],
                    radius_m=where.get("radius_m"),
                    method=where.get("method"),
                    at=None,
                ),
            }
            locations.append(location)
            call["locationReference"] = [_ref(location["$id"])]
            person["locationReference"] = [_ref(location["$id"])]
        call["personReference"] = [_ref(person["$id"])]
        calls.append(call)
        persons.append(person)
    return calls, callbacks, persons


def _units(
    incident: Mapping[str, Any],
    units: Mapping[str, Mapping[str, Any]],
    origin: Origin,
    prologue: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """The units sent (offered, on the job, or done with it) and one dispatch each."""
    me = origin.agency_id
    resources: dict[str, dict[str, Any]] = {}
    dispatches: list[dict[str, Any]] = []
    agencies: set[str] = set()
    for assignment in incident.get("assignments", []):
        unit = units.get(assignment["unit_id"])
        if assignment["status"] not in _DISPATCHED_ASSIGNMENTS or unit is None:
            continue
        agency = str(unit["agency"])
        agencies.add(agency)
        resource_id = _component_id(me, "unit", unit["id"])
        if assignment["status"] == "completed":
            status_text = "done"
        elif assignment["status"] == "offered":
            status_text = "offered"
        else:
            status_text = str(unit["status"])
        resources[resource_id] = {
            **prologue(resource_id, assignment.get("responded_at") or assignment["offered_at"]),
            "emergencyResourceTypeCommonRegistryText": _RESOURCE_TYPE.get(agency, agency),
            "emergencyResourceTypeInternalText": agency,
            "emergencyResourceName": str(unit["callsign"]),
            "resourceAttributeRegistryText": [],
            "resourceAttributeInternalText": list(unit.get("capabilities", [])),
            "primaryUnitStatusRegistryText": "Available"
            if status_text == "done"
            else _UNIT_STATUS.get(status_text, "Assigned"),
            "secondaryUnitStatusRegistryText": [],
            "unitStatusInternal": [status_text],
            "agentReference": [],
        }
        dispatches.append(
            {
                **prologue(
                    _component_id(me, "dispatch", assignment["id"]), assignment["offered_at"]
                ),
                "agencyReference": _ref(_unit_agency_id(agency, origin)),
                "emergencyResourceReference": [_ref(resource_id)],
            }
        )
    return list(resources.values()), dispatches, agencies


def _merges(incident: Mapping[str, Any], me: str, prologue: Any) -> list[dict[str, Any]]:
    """This incident folded into another (REPLACED), or others folded into it (REPLACING)."""
    merges: list[dict[str, Any]] = []
    if incident.get("merged_into"):
        merges.append(
            {
                **prologue(_component_id(me, "merged-into", incident["id"])),
                "incidentTrackingIdentifier": incident_urn(int(incident["merged_into"]), me),
                "incidentMergeDirectionCode": "REPLACED",
            }
        )
    folded: set[int] = set()
    for event in incident.get("events", []):
        # A merge moves the duplicate's reports here, each with where it came from.
        merged_from = (event.get("data") or {}).get("from_incident")
        if (
            event["type"] == "incident.report_attached"
            and isinstance(merged_from, int)
            and merged_from not in folded
        ):
            folded.add(merged_from)
            merges.append(
                {
                    **prologue(_component_id(me, "merged-from", merged_from), event["at"]),
                    "incidentTrackingIdentifier": incident_urn(merged_from, me),
                    "incidentMergeDirectionCode": "REPLACING",
                }
            )
    return merges

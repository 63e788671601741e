"""Operator REST API: read incidents, units and zones; steer dispatch by hand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

import asyncpg
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from dispatch import readmodels
from dispatch.api.deps import OperatorDep, ServicesDep
from dispatch.callers import caller_history
from dispatch.correlate import tel_key
from dispatch.errors import NotFound
from dispatch.retry import in_transaction
from geo.location import Location
from geo.points import GeoPoint

router = APIRouter(prefix="/v1", tags=["operators"])
T = TypeVar("T")


@router.get("/incidents")
async def list_incidents(
    services: ServicesDep,
    _operator: OperatorDep,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Incidents, newest first."""
    async with services.pool.acquire() as conn:
        return await readmodels.list_incidents(conn, status=status, limit=limit)


@router.get("/incidents/{incident_id}")
async def get_incident(
    incident_id: int, services: ServicesDep, _operator: OperatorDep
) -> dict[str, Any]:
    """One incident with its reports, assignments and events."""
    async with services.pool.acquire() as conn:
        incident = await readmodels.incident_detail(conn, incident_id)
    if incident is None:
        raise NotFound("incident", incident_id)
    return incident


@router.get("/callers/{number}")
async def get_caller(number: str, services: ServicesDep, _operator: OperatorDep) -> dict[str, Any]:
    """A phone number's history with 112: incidents, blank calls, hoaxes, flags."""
    key = tel_key(number)
    if key is None:
        raise NotFound("phone number", number)
    async with services.pool.acquire() as conn:
        return {"number": number, **await caller_history(conn, [key])}


@router.get("/units")
async def list_units(services: ServicesDep, _operator: OperatorDep) -> list[dict[str, Any]]:
    """Every unit with status and position."""
    async with services.pool.acquire() as conn:
        return await readmodels.list_units(conn)


@router.get("/incident-types")
async def list_incident_types(
    services: ServicesDep, _operator: OperatorDep
) -> list[dict[str, Any]]:
    """The incident types operators may classify as, most urgent first: label, priority,
    response plan (one unit of each agency) and the capabilities each agency's unit needs."""
    kinds = sorted(services.dispatcher.incident_types.values(), key=lambda k: (k.priority, k.name))
    return [
        {
            "name": k.name,
            "label": k.label,
            "priority": k.priority,
            "plan": list(k.plan),
            "needs": {agency: sorted(caps) for agency, caps in k.needs.items()},
        }
        for k in kinds
    ]


@router.get("/zones")
async def list_zones(services: ServicesDep, _operator: OperatorDep) -> dict[str, Any]:
    """The jurisdictions as a GeoJSON FeatureCollection."""
    return await readmodels.zones_geojson(services.pool)


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class AssignBody(_Body):
    """Offer the incident to this unit, overriding the recommendation."""

    unit_id: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=500)


class ReasonBody(_Body):
    """Why the operator did it (kept in the event log)."""

    reason: str = Field(min_length=1, max_length=500)


class PlaceBody(_Body):
    """Where the operator places the incident (e.g. the caller's words, geocoded), how
    uncertain that is, and on what evidence."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=50_000)
    reason: str = Field(min_length=1, max_length=500)


class NoteBody(_Body):
    """A free-text note for the incident's timeline."""

    text: str = Field(min_length=1, max_length=4000)


class ClassifyBody(_Body):
    """The incident type the call-taker judges it to be (see config/incident_types.json)."""

    type: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=500)


class CloseBody(_Body):
    """How the incident ended (e.g. 'resolved on scene', 'hoax', 'no trace')."""

    disposition: str = Field(min_length=1, max_length=200)


class MergeBody(_Body):
    """The incident that absorbs this one."""

    into: int


class UnitStatusBody(_Body):
    """A status an operator may set for a unit with no active job."""

    status: Literal["available", "off_duty", "out_of_service"]
    reason: str = Field(min_length=1, max_length=500)


async def _steer(services: ServicesDep, action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run an operator's action in its own transaction, then have the queue look again
    (a unit freed or an incident newly waiting may make an offer possible)."""
    result = await in_transaction(services.pool, action)
    services.queue.wake()
    return result


async def _detail(services: ServicesDep, incident_id: int) -> dict[str, Any]:
    async with services.pool.acquire() as conn:
        incident = await readmodels.incident_detail(conn, incident_id)
    if incident is None:
        raise NotFound("incident", incident_id)
    return incident


@router.post("/incidents/{incident_id}/assign")
async def assign_unit(
    incident_id: int, body: AssignBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Offer the incident to a chosen unit (reassigning it if another unit had it)."""
    await _steer(
        services,
        lambda conn: services.control.assign(
            conn, incident_id, body.unit_id, actor=operator.actor, reason=body.reason
        ),
    )
    return await _detail(services, incident_id)


@router.post("/assignments/{assignment_id}/cancel")
async def cancel_assignment(
    assignment_id: int, body: ReasonBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Take an offer or assignment off its unit; the incident goes back to the queue."""
    incident_id = await _steer(
        services,
        lambda conn: services.control.cancel_assignment(
            conn, assignment_id, actor=operator.actor, reason=body.reason
        ),
    )
    return await _detail(services, incident_id)


@router.post("/reports/{report_id}/split", status_code=201)
async def split_report(
    report_id: int, body: ReasonBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Take a wrongly attached report out into an incident of its own (dispatched like
    any new one); returns the new incident."""
    incident_id = await _steer(
        services,
        lambda conn: services.intake.split(
            conn, report_id, actor=operator.actor, reason=body.reason
        ),
    )
    return await _detail(services, incident_id)


@router.post("/incidents/{incident_id}/location")
async def place_incident(
    incident_id: int, body: PlaceBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Set the incident's location from the caller's words (it replaces the current
    one); an incident that waited for a location or a unit is dispatched at once."""
    where = Location(GeoPoint(lat=body.lat, lon=body.lon), body.radius_m, "operator")
    await _steer(
        services,
        lambda conn: services.intake.place(
            conn, incident_id, where, actor=operator.actor, reason=body.reason
        ),
    )
    return await _detail(services, incident_id)


@router.post("/incidents/{incident_id}/confirm")
async def confirm_incident(
    incident_id: int, body: ReasonBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """A silent call called back turned out to be an emergency: dispatch it."""
    await _steer(
        services,
        lambda conn: services.intake.confirm(
            conn, incident_id, actor=operator.actor, reason=body.reason
        ),
    )
    return await _detail(services, incident_id)


@router.post("/incidents/{incident_id}/notes", status_code=201)
async def add_note(
    incident_id: int, body: NoteBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Add a note to the incident's timeline."""
    event_id = await in_transaction(
        services.pool,
        lambda conn: services.control.add_note(
            conn, incident_id, actor=operator.actor, text=body.text
        ),
    )
    return {"event_id": event_id, "incident_id": incident_id}


@router.post("/incidents/{incident_id}/classify")
async def classify_incident(
    incident_id: int, body: ClassifyBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Set the incident's type; its priority and response plan follow."""
    await _steer(
        services,
        lambda conn: services.control.classify(
            conn, incident_id, body.type, actor=operator.actor, reason=body.reason
        ),
    )
    return await _detail(services, incident_id)


@router.post("/incidents/{incident_id}/close")
async def close_incident(
    incident_id: int, body: CloseBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Close the incident with a disposition; its units become available."""
    await _steer(
        services,
        lambda conn: services.control.close(
            conn, incident_id, actor=operator.actor, disposition=body.disposition
        ),
    )
    return await _detail(services, incident_id)


@router.post("/incidents/{incident_id}/merge")
async def merge_incident(
    incident_id: int, body: MergeBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Fold a duplicate into another incident; returns the surviving incident."""
    await _steer(
        services,
        lambda conn: services.control.merge(conn, incident_id, body.into, actor=operator.actor),
    )
    return await _detail(services, body.into)


@router.post("/units/{unit_id}/status")
async def set_unit_status(
    unit_id: str, body: UnitStatusBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Put a unit in or out of service, or off duty."""
    result = await in_transaction(
        services.pool,
        lambda conn: services.control.set_unit_status(
            conn, unit_id, actor=operator.actor, status=body.status, reason=body.reason
        ),
    )
    if body.status == "available":
        services.queue.wake()
    return result


@router.get("/geocode")
async def geocode(
    services: ServicesDep,
    _operator: OperatorDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=200,
            pattern=r"\S",
            description="What the caller said, e.g. 'near Kalpana chhak'.",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> dict[str, Any]:
    """Candidate places for a caller's spoken address, best first, each with the radius
    of its uncertainty and a match score (0..1). Nothing is changed: the operator chooses.
    """
    results = await services.geocoder.geocode(q, limit=limit)
    return {
        "query": q,
        "results": [
            {
                "name": r.name,
                "kind": r.kind,
                "lat": r.location.point.lat,
                "lon": r.location.point.lon,
                "radius_m": r.location.radius_m,
                "score": r.score,
                "source": r.source,
            }
            for r in results
        ],
    }

"""Operator REST for incidents: read them, and steer their dispatch by hand.

Every route applies the desk rule of ``dispatch.access``: reads are filtered or
refused by the incident's zone; an action checks the incidents it touches inside its
own transaction, with their rows locked, so the zone it was allowed on cannot change
before it commits. The answer to an action is its result, even when the action moved
the incident off the desk (placed in another zone, or a report split out there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from dispatch import access, readmodels
from dispatch.api.deps import OperatorDep, ServicesDep
from dispatch.api.errors import ACTION_RESPONSES
from dispatch.api.limits import (
    AssignmentId,
    IncidentId,
    Label,
    NoteText,
    Reason,
    ReportId,
    UnitId,
)
from dispatch.auth import Principal
from dispatch.errors import NotFound
from dispatch.retry import in_transaction
from dispatch.services import Services
from geo.location import Location
from geo.points import GeoPoint

router = APIRouter()
T = TypeVar("T")


@router.get("/incidents")
async def list_incidents(
    services: ServicesDep,
    operator: OperatorDep,
    status: Label | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Incidents, newest first; a desk's operator gets those of its zones and those of
    no zone (what its console shows)."""
    async with services.pool.acquire() as conn:
        return await readmodels.list_incidents(
            conn, status=status, limit=limit, zones=access.desk_zones(operator)
        )


async def _visible_detail(
    services: Services, operator: Principal, incident_id: int
) -> dict[str, Any]:
    async with services.pool.acquire() as conn:
        incident = await readmodels.incident_detail(conn, incident_id)
    zone = incident["zone"]["id"] if incident and incident["zone"] else None
    if incident is None or not access.sees_incident_zone(operator, zone):
        raise access.refusal(operator, "incident", incident_id)
    return incident


@router.get("/incidents/{incident_id}")
async def get_incident(
    incident_id: IncidentId, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """One incident with its reports, assignments and events."""
    return await _visible_detail(services, operator, incident_id)


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class AssignBody(_Body):
    """Offer the incident to this unit, overriding the recommendation."""

    unit_id: UnitId
    reason: Reason


class ReasonBody(_Body):
    """Why the operator did it (kept in the event log)."""

    reason: Reason


class PlaceBody(_Body):
    """Where the operator places the incident (e.g. the caller's words, geocoded), how
    uncertain that is, and on what evidence."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=50_000)
    reason: Reason


class NoteBody(_Body):
    """A free-text note for the incident's timeline."""

    text: NoteText


class ClassifyBody(_Body):
    """The incident type the call-taker judges it to be (see config/incident_types.json)."""

    type: Annotated[Label, Field(max_length=100)]
    reason: Reason


class CloseBody(_Body):
    """How the incident ended (e.g. 'resolved on scene', 'hoax', 'no trace')."""

    disposition: Label


class MergeBody(_Body):
    """The incident that absorbs this one."""

    into: IncidentId


async def _act(
    services: Services,
    check: Callable[[asyncpg.Connection], Awaitable[None]],
    action: Callable[[asyncpg.Connection], Awaitable[T]],
    *,
    wake: bool = True,
) -> T:
    """Check the caller may act, then act, in one transaction; then have the queue look
    again (a unit freed or an incident newly waiting may make an offer possible)."""

    async def checked(conn: asyncpg.Connection) -> T:
        await check(conn)
        return await action(conn)

    result = await in_transaction(services.pool, checked)
    if wake:
        services.queue.wake()
    return result


def _on_desk(
    operator: Principal, *incident_ids: int
) -> Callable[[asyncpg.Connection], Awaitable[None]]:
    """A check that the operator sees each of these incidents (locked, in id order)."""

    async def check(conn: asyncpg.Connection) -> None:
        zones = await readmodels.incident_zones(conn, list(incident_ids), lock=True)
        access.require_incidents(operator, zones, incident_ids)

    return check


def _via_incident(
    operator: Principal, table: str, kind: str, row_id: int
) -> Callable[[asyncpg.Connection], Awaitable[None]]:
    """A check that an assignment or report exists and its incident is on the desk."""

    async def check(conn: asyncpg.Connection) -> None:
        exists, zone = await readmodels.incident_zone_of(conn, table, row_id)
        access.require_via_incident(operator, kind, row_id, exists=exists, zone_id=zone)

    return check


async def _result(services: Services, incident_id: int) -> dict[str, Any]:
    async with services.pool.acquire() as conn:
        incident = await readmodels.incident_detail(conn, incident_id)
    if incident is None:  # pragma: no cover - it was just acted on in a commit
        raise NotFound("incident", incident_id)
    return incident


@router.post("/incidents/{incident_id}/assign", responses=ACTION_RESPONSES)
async def assign_unit(
    incident_id: IncidentId, body: AssignBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Offer the incident to a chosen unit (reassigning it if another unit had it). Any
    unit of the fleet: a desk sends units across its borders."""
    await _act(
        services,
        _on_desk(operator, incident_id),
        lambda conn: services.control.assign(
            conn, incident_id, body.unit_id, actor=operator.actor, reason=body.reason
        ),
    )
    return await _result(services, incident_id)


@router.post("/assignments/{assignment_id}/cancel", responses=ACTION_RESPONSES)
async def cancel_assignment(
    assignment_id: AssignmentId, body: ReasonBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Take an offer or assignment off its unit; the incident goes back to the queue."""
    incident_id = await _act(
        services,
        _via_incident(operator, "assignments", "assignment", assignment_id),
        lambda conn: services.control.cancel_assignment(
            conn, assignment_id, actor=operator.actor, reason=body.reason
        ),
    )
    return await _result(services, incident_id)


@router.post("/reports/{report_id}/split", status_code=201, responses=ACTION_RESPONSES)
async def split_report(
    report_id: ReportId, body: ReasonBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Take a wrongly attached report out into an incident of its own (dispatched like
    any new one); returns the new incident."""
    incident_id = await _act(
        services,
        _via_incident(operator, "reports", "report", report_id),
        lambda conn: services.intake.split(
            conn, report_id, actor=operator.actor, reason=body.reason
        ),
    )
    return await _result(services, incident_id)


@router.post("/incidents/{incident_id}/location", responses=ACTION_RESPONSES)
async def place_incident(
    incident_id: IncidentId, body: PlaceBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Set the incident's location from the caller's words (it replaces the current
    one); an incident that waited for a location or a unit is dispatched at once."""
    where = Location(GeoPoint(lat=body.lat, lon=body.lon), body.radius_m, "operator")
    await _act(
        services,
        _on_desk(operator, incident_id),
        lambda conn: services.intake.place(
            conn, incident_id, where, actor=operator.actor, reason=body.reason
        ),
    )
    return await _result(services, incident_id)


@router.post("/incidents/{incident_id}/confirm", responses=ACTION_RESPONSES)
async def confirm_incident(
    incident_id: IncidentId, body: ReasonBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """A silent call called back turned out to be an emergency: dispatch it."""
    await _act(
        services,
        _on_desk(operator, incident_id),
        lambda conn: services.intake.confirm(
            conn, incident_id, actor=operator.actor, reason=body.reason
        ),
    )
    return await _result(services, incident_id)


@router.post("/incidents/{incident_id}/notes", status_code=201, responses=ACTION_RESPONSES)
async def add_note(
    incident_id: IncidentId, body: NoteBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Add a note to the incident's timeline."""
    event_id = await _act(
        services,
        _on_desk(operator, incident_id),
        lambda conn: services.control.add_note(
            conn, incident_id, actor=operator.actor, text=body.text
        ),
        wake=False,
    )
    return {"event_id": event_id, "incident_id": incident_id}


@router.post("/incidents/{incident_id}/classify", responses=ACTION_RESPONSES)
async def classify_incident(
    incident_id: IncidentId, body: ClassifyBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Set the incident's type; its priority and response plan follow."""
    await _act(
        services,
        _on_desk(operator, incident_id),
        lambda conn: services.control.classify(
            conn, incident_id, body.type, actor=operator.actor, reason=body.reason
        ),
    )
    return await _result(services, incident_id)


@router.post("/incidents/{incident_id}/close", responses=ACTION_RESPONSES)
async def close_incident(
    incident_id: IncidentId, body: CloseBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Close the incident with a disposition; its units become available."""
    await _act(
        services,
        _on_desk(operator, incident_id),
        lambda conn: services.control.close(
            conn, incident_id, actor=operator.actor, disposition=body.disposition
        ),
    )
    return await _result(services, incident_id)


@router.post("/incidents/{incident_id}/merge", responses=ACTION_RESPONSES)
async def merge_incident(
    incident_id: IncidentId, body: MergeBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Fold a duplicate into another incident; returns the surviving incident. The
    desk must see both."""
    await _act(
        services,
        _on_desk(operator, incident_id, body.into),
        lambda conn: services.control.merge(conn, incident_id, body.into, actor=operator.actor),
    )
    return await _result(services, body.into)

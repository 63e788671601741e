"""Operator REST API: incidents, units, zones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from dispatch import readmodels
from dispatch.api.deps import OperatorDep, ServicesDep
from dispatch.errors import NotFound

router = APIRouter(prefix="/v1", tags=["operators"])


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


@router.get("/units")
async def list_units(services: ServicesDep, _operator: OperatorDep) -> list[dict[str, Any]]:
    """Every unit with status and position."""
    async with services.pool.acquire() as conn:
        return await readmodels.list_units(conn)


@router.get("/zones")
async def list_zones(services: ServicesDep, _operator: OperatorDep) -> dict[str, Any]:
    """The jurisdictions as a GeoJSON FeatureCollection."""
    return await readmodels.zones_geojson(services.pool)

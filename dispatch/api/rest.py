"""Operator REST API: read incidents, units and zones; steer dispatch by hand.

One router under ``/v1`` gathers the resources (``incidents``, ``units``) and the
reference reads below. Every route needs an operator token and applies the desk rule
of ``dispatch.access``; every refusal is an ``ErrorBody`` (``dispatch.api.errors``),
documented in the OpenAPI answers of each route.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from dispatch import readmodels
from dispatch.access import sees_incident_zone
from dispatch.api import incidents, units, vehicles
from dispatch.api.deps import OperatorDep, ServicesDep
from dispatch.api.errors import ERROR_RESPONSES
from dispatch.api.limits import PhoneNumber, SpokenPlace
from dispatch.callers import caller_history
from dispatch.correlate import tel_key
from dispatch.errors import NotFound

router = APIRouter(prefix="/v1", tags=["operators"], responses=ERROR_RESPONSES)
router.include_router(incidents.router)
router.include_router(units.router)
router.include_router(vehicles.router)


@router.get("/callers/{number}")
async def get_caller(
    number: PhoneNumber, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """A phone number's history with 112: incidents, blank calls, hoaxes, flags.

    Every desk sees a caller's whole history (counts, statuses, types: no location, no
    content): a hoax record or a repeat caller matters wherever the next call lands. The
    ids are only those of incidents the desk sees (null for another zone's).
    """
    key = tel_key(number)
    if key is None:
        raise NotFound("phone number", number)
    async with services.pool.acquire() as conn:
        history = await caller_history(
            conn, [key], shows_id=lambda zone: sees_incident_zone(operator, zone)
        )
    return {"number": number, **history}


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
    """The jurisdictions as a GeoJSON FeatureCollection: every zone, for every operator
    (a desk's map draws its neighbours too; geography is not case data)."""
    return await readmodels.zones_geojson(services.pool)


@router.get("/geocode")
async def geocode(
    services: ServicesDep,
    _operator: OperatorDep,
    q: Annotated[
        SpokenPlace, Query(description="What the caller said, e.g. 'near Kalpana chhak'.")
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

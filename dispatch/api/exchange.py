"""Incidents that travel (docs/exchange.md): an incident's EIDO for operators."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from dispatch import access
from dispatch.api.deps import OperatorDep
from dispatch.api.errors import ERROR_RESPONSES
from dispatch.api.limits import IncidentId
from dispatch.exchange.runtime import Exchange
from dispatch.exchange.snapshot import incident_eido

router = APIRouter(prefix="/v1", tags=["exchange"], responses=ERROR_RESPONSES)


def get_exchange(request: Request) -> Exchange:
    """The app's exchange parts."""
    exchange: Exchange = request.app.state.exchange
    return exchange


ExchangeDep = Annotated[Exchange, Depends(get_exchange)]


@router.get("/incidents/{incident_id}/eido")
async def get_eido(
    incident_id: IncidentId, exchange: ExchangeDep, operator: OperatorDep
) -> dict[str, Any]:
    """The incident as a NENA-STA-021 Emergency Incident Data Object (JSON), as it is
    handed to another agency's CAD. A desk gets only the incidents it sees."""
    async with exchange.services.pool.acquire() as conn:
        found = await incident_eido(
            conn, incident_id, origin=exchange.origin, agencies=exchange.agencies
        )
    zone = found[0]["zone"]["id"] if found and found[0]["zone"] else None
    if found is None or not access.sees_incident_zone(operator, zone):
        raise access.refusal(operator, "incident", incident_id)
    return found[1]

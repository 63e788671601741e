"""Operator REST for units: the fleet a desk watches, and taking a unit in or out of
service. The desk rule is ``dispatch.access.sees_unit_zone``: the units now in the
desk's zones, as in its console's snapshot."""

from __future__ import annotations

from typing import Any, Literal

import asyncpg
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from dispatch import access, readmodels
from dispatch.api.deps import OperatorDep, ServicesDep
from dispatch.api.errors import ACTION_RESPONSES
from dispatch.api.limits import Reason, UnitId
from dispatch.retry import in_transaction

router = APIRouter()


@router.get("/units")
async def list_units(services: ServicesDep, operator: OperatorDep) -> list[dict[str, Any]]:
    """Units with status and position: every unit for a city-wide operator, those now in
    its zones for a desk (as its console's snapshot)."""
    async with services.pool.acquire() as conn:
        return await readmodels.list_units(conn, zones=access.desk_zones(operator))


class UnitStatusBody(BaseModel):
    """A status an operator may set for a unit with no active job."""

    model_config = ConfigDict(strict=True, extra="forbid")

    status: Literal["available", "off_duty", "out_of_service"]
    reason: Reason


@router.post("/units/{unit_id}/status", responses=ACTION_RESPONSES)
async def set_unit_status(
    unit_id: UnitId, body: UnitStatusBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Put a unit in or out of service, or off duty (a desk: a unit now in its zones)."""

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        exists, zone = await readmodels.unit_zone(conn, unit_id)
        access.require_unit(operator, unit_id, exists=exists, zone_id=zone)
        return await services.control.set_unit_status(
            conn, unit_id, actor=operator.actor, status=body.status, reason=body.reason
        )

    result = await in_transaction(services.pool, action)
    if body.status == "available":
        services.queue.wake()
    return result

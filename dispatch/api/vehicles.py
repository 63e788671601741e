"""Operator REST for the vehicles register (AIS-140 panic buttons): which vehicle, of
which operator, a tracking device is fitted to. The register is city-wide reference
data: every operator, a desk's too, reads and fills it."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from dispatch import vehicles
from dispatch.api.deps import OperatorDep, ServicesDep
from dispatch.api.errors import ACTION_RESPONSES
from dispatch.api.limits import DeviceImei, Label, Registration
from dispatch.errors import NotFound
from dispatch.retry import in_transaction

router = APIRouter()


@router.get("/vehicles")
async def list_vehicles(
    services: ServicesDep,
    _operator: OperatorDep,
    registration: Annotated[Registration | None, Query()] = None,
    imei: Annotated[DeviceImei | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Registered vehicles, the latest changed first; by registration or IMEI."""
    plate = vehicles.plate(registration) if registration is not None else None
    async with services.pool.acquire() as conn:
        return await vehicles.list_vehicles(conn, registration=plate, imei=imei, limit=limit)


@router.get("/vehicles/{registration}")
async def get_vehicle(
    registration: Registration, services: ServicesDep, _operator: OperatorDep
) -> dict[str, Any]:
    """One vehicle by its registration (only its letters and digits count)."""
    plate = vehicles.plate(registration)
    async with services.pool.acquire() as conn:
        found = await vehicles.list_vehicles(conn, registration=plate, imei=None, limit=1)
    if not found:
        raise NotFound("vehicle", plate)
    return found[0]


class VehicleBody(BaseModel):
    """What an operator records of a vehicle; an omitted IMEI keeps the known one."""

    model_config = ConfigDict(strict=True, extra="forbid")

    operator: Label | None = None
    vehicle_type: Label | None = None
    imei: DeviceImei | None = None


@router.put("/vehicles/{registration}", responses=ACTION_RESPONSES)
async def put_vehicle(
    registration: Registration, body: VehicleBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Record a vehicle: its operator (owner), type and tracking device. An IMEI that
    another vehicle had moves here (``imei_moved_from`` names that vehicle)."""
    plate = vehicles.plate(registration)

    async def action(conn: asyncpg.Connection) -> dict[str, Any]:
        return await vehicles.put_vehicle(
            conn,
            plate,
            operator=body.operator,
            vehicle_type=body.vehicle_type,
            imei=body.imei,
            actor=operator.actor,
        )

    return await in_transaction(services.pool, action)

"""Operator REST for SHOUT volunteers: register, verify, opt out, erase; and, per
incident, who was alerted, the caller's consent and standing a volunteer down.

A volunteer's home area is a zone: a desk manages the volunteers of its zones, a
city-wide operator all of them; what concerns one incident follows the incident's zone.
The rule is ``dispatch.access``, as for every route.
A volunteer's own token opens none of these (it is not an operator token).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from dispatch import access, readmodels
from dispatch.api.deps import OperatorDep, ServicesDep
from dispatch.api.errors import ACTION_RESPONSES, ERROR_RESPONSES
from dispatch.api.limits import IncidentId, Label, PhoneNumber, Reason
from dispatch.auth import Principal
from dispatch.retry import in_transaction
from dispatch.volunteers import alerts, store

router = APIRouter(prefix="/v1", tags=["operators", "volunteers"], responses=ERROR_RESPONSES)

# A volunteer id (e.g. "vol-3f2a9c01b7d4"): letters, digits and hyphens.
VolunteerId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
Language = Annotated[
    str, StringConstraints(min_length=1, max_length=40, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class RegisterBody(_Body):
    """A citizen who volunteers with the police (SHOUT)."""

    name: Label
    phone: PhoneNumber
    home_area: Annotated[Label, Field(description="the zone id of the volunteer's home area")]
    languages: list[Language] = Field(default_factory=list, max_length=20)
    police_verified: bool = False


class VerifyBody(_Body):
    """The police verification's outcome (false withdraws it)."""

    verified: bool
    reason: Reason


class ReasonBody(_Body):
    """Why the operator did it (kept in the event log)."""

    reason: Reason


class ConsentBody(_Body):
    """Whether the caller agreed to volunteers coming to help."""

    consent: Literal["given", "refused"]


async def _on_desk(conn: asyncpg.Connection, operator: Principal, incident_id: int) -> None:
    zones = await readmodels.incident_zones(conn, [incident_id], lock=True)
    access.require_incidents(operator, zones, [incident_id])


@router.post("/volunteers", status_code=201, responses=ACTION_RESPONSES)
async def register_volunteer(
    body: RegisterBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Register a volunteer; the answer carries their token, shown this once (only its
    hash is kept). They are alerted once verified and available."""

    async def act(conn: asyncpg.Connection) -> tuple[dict[str, Any], str]:
        exists = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM zones WHERE id = $1)", body.home_area
        )
        access.require_zone(operator, body.home_area, exists=exists)
        return await store.register(
            conn,
            services.settings.db_schema,
            name=body.name,
            phone=body.phone,
            home_area=body.home_area,
            languages=list(body.languages),
            verified=body.police_verified,
            actor=operator.actor,
        )

    volunteer, token = await in_transaction(services.pool, act)
    return {"id": volunteer["id"], "token": token, "volunteer": volunteer}


@router.get("/volunteers")
async def list_volunteers(services: ServicesDep, operator: OperatorDep) -> list[dict[str, Any]]:
    """The registered volunteers (a desk's: those of its zones)."""
    async with services.pool.acquire() as conn:
        return await store.list_all(conn, zones=access.desk_zones(operator))


async def _visible(
    conn: asyncpg.Connection, operator: Principal, volunteer_id: str, *, lock: bool = True
) -> Any:
    """The volunteer's row, if the operator may manage them (404 otherwise)."""
    row = await store.find(conn, volunteer_id, lock=lock)
    access.require_volunteer(
        operator,
        volunteer_id,
        exists=row is not None,
        home_area=row["home_area"] if row is not None else None,
    )
    return row


@router.get("/volunteers/{volunteer_id}", responses=ACTION_RESPONSES)
async def get_volunteer(
    volunteer_id: VolunteerId, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """One volunteer's record."""
    async with services.pool.acquire() as conn:
        return store.operator_view(await _visible(conn, operator, volunteer_id, lock=False))


@router.post("/volunteers/{volunteer_id}/verification", responses=ACTION_RESPONSES)
async def verify_volunteer(
    volunteer_id: VolunteerId, body: VerifyBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Record the police verification; withdrawing it stands the volunteer down."""

    async def act(conn: asyncpg.Connection) -> dict[str, Any]:
        await _visible(conn, operator, volunteer_id)
        return await store.set_verified(
            conn, services.settings.db_schema, volunteer_id, body.verified, actor=operator.actor
        )

    result = await in_transaction(services.pool, act)
    services.volunteers.wake()
    return result


@router.post("/volunteers/{volunteer_id}/opt-out", responses=ACTION_RESPONSES)
async def opt_out_volunteer(
    volunteer_id: VolunteerId, body: ReasonBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """The volunteer asked (e.g. by phone) to get no more alerts: every active one is
    stood down. The record stays until deleted."""

    async def act(conn: asyncpg.Connection) -> dict[str, Any]:
        await _visible(conn, operator, volunteer_id)
        return await store.set_opted_out(
            conn, services.settings.db_schema, volunteer_id, True, actor=operator.actor
        )

    return await in_transaction(services.pool, act)


@router.delete("/volunteers/{volunteer_id}", responses=ACTION_RESPONSES)
async def delete_volunteer(
    volunteer_id: VolunteerId, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Erase the volunteer's data (name, phone, area, languages, position, token); their
    past alerts stay on the incidents, anonymous."""

    async def act(conn: asyncpg.Connection) -> None:
        await _visible(conn, operator, volunteer_id)
        await store.delete(conn, services.settings.db_schema, volunteer_id, actor=operator.actor)

    await in_transaction(services.pool, act)
    return {"deleted": volunteer_id}


@router.get("/incidents/{incident_id}/volunteers", responses=ACTION_RESPONSES)
async def incident_volunteers(
    incident_id: IncidentId, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Who was alerted to the incident, who accepted, how far they were, and where the
    active ones are now; with the caller's consent."""
    async with services.pool.acquire() as conn, conn.transaction(readonly=True):
        zones = await readmodels.incident_zones(conn, [incident_id])
        access.require_incidents(operator, zones, [incident_id])
        consent = await conn.fetchval(
            "SELECT consent FROM volunteer_consent WHERE incident_id = $1", incident_id
        )
        listed = await alerts.incident_alerts(conn, incident_id)
    return {"incident_id": incident_id, "consent": consent or "not_asked", "alerts": listed}


@router.post("/incidents/{incident_id}/volunteer-consent", responses=ACTION_RESPONSES)
async def set_volunteer_consent(
    incident_id: IncidentId, body: ConsentBody, services: ServicesDep, operator: OperatorDep
) -> dict[str, Any]:
    """Record the caller's answer; refused stands every volunteer down and alerts no
    more. Volunteers who accept are told it."""

    async def act(conn: asyncpg.Connection) -> None:
        await _on_desk(conn, operator, incident_id)
        await alerts.set_consent(
            conn, services.settings.db_schema, incident_id, body.consent, actor=operator.actor
        )

    await in_transaction(services.pool, act)
    services.volunteers.wake()
    return {"incident_id": incident_id, "consent": body.consent}


@router.post(
    "/incidents/{incident_id}/volunteers/{volunteer_id}/stand-down", responses=ACTION_RESPONSES
)
async def stand_down_volunteer(
    incident_id: IncidentId,
    volunteer_id: VolunteerId,
    body: ReasonBody,
    services: ServicesDep,
    operator: OperatorDep,
) -> dict[str, Any]:
    """Stand a volunteer down from the incident (alerted or on their way)."""

    async def act(conn: asyncpg.Connection) -> dict[str, Any]:
        await _on_desk(conn, operator, incident_id)
        return await alerts.stand_down(
            conn,
            services.settings.db_schema,
            incident_id,
            volunteer_id,
            actor=operator.actor,
            reason=body.reason,
        )

    row = await in_transaction(services.pool, act)
    services.volunteers.wake()
    return {
        "alert_id": row["id"],
        "volunteer_id": volunteer_id,
        "state": row["state"],
        "reason": row["end_reason"],
    }

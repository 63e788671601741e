"""Incidents that travel (docs/exchange.md): an incident's EIDO, hand-offs to other
agencies' CADs, and the signed endpoints those CADs call (an EIDO handed to us, a
status update on one we handed them)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dispatch import access, readmodels
from dispatch.api.deps import OperatorDep
from dispatch.api.errors import ACTION_RESPONSES, ERROR_RESPONSES, field_errors
from dispatch.api.limits import IncidentId, Label, Reason
from dispatch.errors import (
    IdempotencyConflict,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from dispatch.exchange import handoffs
from dispatch.exchange.agencies import Agency
from dispatch.exchange.eido import parse_incident_urn
from dispatch.exchange.handoff import REMOTE_STATUSES, EidoUnusable, inbound_report
from dispatch.exchange.runtime import Exchange
from dispatch.exchange.snapshot import incident_eido
from dispatch.retry import in_transaction
from dispatch.transient import is_transient
from gateways.signing import SignatureError, verify

router = APIRouter(prefix="/v1", tags=["exchange"], responses=ERROR_RESPONSES)


async def get_exchange(request: Request) -> Exchange:
    """The app's exchange parts (async: see ``deps.get_services``)."""
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


@router.get("/exchange/agencies")
async def list_agencies(exchange: ExchangeDep, _operator: OperatorDep) -> list[dict[str, str]]:
    """The agencies incidents can be handed to (ids, names, types; never secrets)."""
    return [a.public() for a in sorted(exchange.agencies.values(), key=lambda a: a.id)]


class HandoffBody(BaseModel):
    """The agency to hand the incident to, and why (kept in the event log)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    agency: Label
    reason: Reason


@router.post("/incidents/{incident_id}/handoff", status_code=201, responses=ACTION_RESPONSES)
async def hand_over(
    incident_id: IncidentId, body: HandoffBody, exchange: ExchangeDep, operator: OperatorDep
) -> dict[str, Any]:
    """Hand the incident to another agency's CAD: its EIDO is queued and POSTed, signed,
    until acknowledged; each step is an event on the incident (docs/exchange.md)."""
    agency = exchange.agencies.get(body.agency)

    async def act(conn: asyncpg.Connection) -> dict[str, Any]:
        zones = await readmodels.incident_zones(conn, [incident_id], lock=True)
        access.require_incidents(operator, zones, [incident_id])
        if agency is None:
            raise NotFound("agency", body.agency)
        return await handoffs.hand_over(
            conn,
            exchange.services.settings.db_schema,
            incident_id=incident_id,
            agency=agency,
            origin=exchange.origin,
            actor=operator.actor,
            reason=body.reason,
        )

    result = await in_transaction(exchange.services.pool, act)
    exchange.delivery.wake()
    return result


@router.get("/incidents/{incident_id}/handoffs")
async def list_handoffs(
    incident_id: IncidentId, exchange: ExchangeDep, operator: OperatorDep
) -> list[dict[str, Any]]:
    """The incident's hand-offs: state, tries, the other CAD's last status."""
    async with exchange.services.pool.acquire() as conn:
        zones = await readmodels.incident_zones(conn, [incident_id])
        access.require_incidents(operator, zones, [incident_id])
        return await handoffs.handoffs_of(conn, incident_id)


async def _signed(request: Request, exchange: Exchange) -> tuple[Agency, bytes, str]:
    """A request signed by a configured agency: (agency, raw body, Idempotency-Key);
    Unauthorized (401) otherwise. Nothing is read or written before the check."""
    settings = exchange.services.settings
    agency_id = request.headers.get("x-erss-agency")
    timestamp = request.headers.get("x-erss-timestamp")
    signature = request.headers.get("x-erss-signature")
    if not (agency_id and timestamp and signature):
        raise Unauthorized(
            "X-ERSS-Agency, X-ERSS-Timestamp and X-ERSS-Signature headers are required"
        )
    agency = exchange.agencies.get(agency_id)
    if agency is None:
        raise Unauthorized("unknown agency: X-ERSS-Agency names no configured agency")
    declared = request.headers.get("content-length")
    limit = settings.gateway_max_body_bytes
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(limit)
    try:
        verify(
            secrets=agency.secrets,
            timestamp=timestamp,
            body=body,
            signature=signature,
            now=time.time(),
            max_skew_s=settings.gateway_clock_skew_s,
        )
    except SignatureError as err:
        raise Unauthorized(str(err)) from err
    await exchange.services.rate_limiter.check(f"agency:{agency.id}")
    key = request.headers.get("idempotency-key")
    if not key or len(key) > 200:
        raise MalformedRequest(
            [
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": "Idempotency-Key header is required (1 to 200 characters); a retry"
                    " of the same delivery reuses it",
                    "type": "missing",
                }
            ]
        )
    return agency, body, key


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedRequest(
            [{"loc": ["body"], "msg": f"the body is not JSON: {err}"[:200], "type": "json"}]
        ) from err


@router.post("/exchange/eido", status_code=202, responses={401: {}, 409: {}, 422: {}})
async def receive_eido(request: Request, exchange: ExchangeDep) -> JSONResponse:
    """Signed by another agency's CAD: an EIDO it hands us becomes an incident here (once
    per delivery), and it is told we accepted it; later changes are reported back."""
    agency, body, key = await _signed(request, exchange)
    services = exchange.services
    try:
        inbound = inbound_report(
            _json(body), agency_id=agency.id, known_types=services.dispatcher.incident_types
        )
    except EidoUnusable as err:
        raise MalformedRequest([{"loc": ["body"], "msg": str(err), "type": "eido"}]) from err
    sha = handoffs.body_sha256(body)
    try:
        result = await services.intake.submit(inbound.report, idempotency_key=key, body_sha256=sha)
    except IdempotencyConflict:
        raise
    except Exception as err:
        if is_transient(err):
            raise
        result = await services.intake.keep_unprocessable(
            inbound.report,
            idempotency_key=key,
            body_sha256=sha,
            error=f"{type(err).__name__}: {err}"[:300],
        )

    async def remember(conn: asyncpg.Connection) -> None:
        await handoffs.record_inbound(
            conn,
            agency_id=agency.id,
            tracking_id=inbound.tracking_id,
            incident_id=result.incident_id,
        )

    await in_transaction(services.pool, remember)
    exchange.delivery.wake()
    return JSONResponse({**result.to_json(), "tracking_id": inbound.tracking_id}, status_code=202)


class StatusBody(BaseModel):
    """What the other CAD did with an incident we handed it."""

    model_config = ConfigDict(extra="ignore")

    incident: str = Field(min_length=1, max_length=500, description="Our EIDO's $id")
    status: str = Field(pattern="^(" + "|".join(REMOTE_STATUSES) + ")$")
    at: str | None = Field(default=None, max_length=64)
    unit: str | None = Field(default=None, max_length=200)
    disposition: str | None = Field(default=None, max_length=500)
    note: str | None = Field(default=None, max_length=2000)


@router.post("/exchange/status", responses={401: {}, 404: {}, 409: {}, 422: {}})
async def receive_status(request: Request, exchange: ExchangeDep) -> dict[str, Any]:
    """Signed by the CAD we handed an incident to: accepted, unit_assigned, on_scene or
    closed; it appears on the incident (an incident.handoff_status event)."""
    agency, body, key = await _signed(request, exchange)
    try:
        update = StatusBody.model_validate_json(body)
    except ValidationError as err:
        raise MalformedRequest(field_errors(err.errors())) from err
    incident_id = parse_incident_urn(update.incident, exchange.origin.agency_id)
    if incident_id is None:
        raise NotFound("incident", "(that $id is not one of ours)")
    sha = handoffs.body_sha256(body)
    detail = update.model_dump(exclude={"incident", "status"}, exclude_none=True)

    async def act(conn: asyncpg.Connection) -> dict[str, Any]:
        # The key is claimed first: a concurrent retry waits here for this one's commit.
        first = await conn.fetchval(
            "INSERT INTO exchange_received (agency_id, key, body_sha256) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING true",
            agency.id,
            key,
            sha,
        )
        if not first:
            earlier = await conn.fetchrow(
                "SELECT body_sha256, response FROM exchange_received WHERE agency_id = $1"
                " AND key = $2",
                agency.id,
                key,
            )
            if earlier["body_sha256"] != sha:
                raise IdempotencyConflict(key)
            stored: dict[str, Any] = earlier["response"]
            return stored
        answer = await handoffs.apply_remote_status(
            conn,
            exchange.services.settings.db_schema,
            agency_id=agency.id,
            incident_id=incident_id,
            status=update.status,
            detail=detail,
        )
        await conn.execute(
            "UPDATE exchange_received SET response = $3 WHERE agency_id = $1 AND key = $2",
            agency.id,
            key,
            answer,
        )
        return answer

    return await in_transaction(exchange.services.pool, act)

"""HTTP route for vehicle alerts (AIS-140) from a vehicle-tracking backend."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from dispatch.errors import MalformedRequest
from dispatch.reports import IncidentReport, IntakeResult
from dispatch.retry import in_transaction
from dispatch.services import Services
from dispatch.transient import is_transient
from dispatch.vehicle_incidents import VehicleIncidents
from dispatch.vehicles import record_device
from gateways.content import parse_lenient
from gateways.openapi import ANSWERS, json_or_text_body
from gateways.vehicle.adapter import VehicleReading, read_alert, read_packet
from gateways.vehicle.schema import VehicleAlert
from gateways.webhook import SignedDelivery, Submit, accept, delivery_for

router = APIRouter(tags=["gateways"])
log = logging.getLogger(__name__)

PACKET_DESCRIPTION = (
    "The device's own AIS-140 packet, as it came ($...*checksum): tracking/alert"
    " (NR, EA emergency, TA tamper, ...), emergency (EPB,EMR / SEM), login or health"
)


@router.post(
    "/v1/gateways/vehicle",
    status_code=202,
    responses=ANSWERS,
    openapi_extra=json_or_text_body(VehicleAlert, PACKET_DESCRIPTION),
)
async def post_vehicle(
    request: Request, delivery: Annotated[SignedDelivery, Depends(delivery_for("vehicle"))]
) -> JSONResponse:
    """Take a vehicle alert: an emergency button makes a P1 incident, a tamper alert one
    that waits for an operator; anything else (login, health, tracking) makes none, but
    moves the vehicle's open incident to its new fix."""
    services: Services = request.app.state.services
    try:
        reading = read_delivery(delivery)
    except MalformedRequest:
        raise
    except Exception as err:
        # A bug reading it: the delivery is kept for operators as any gateway's would be.
        failure = err

        def unreadable(_: SignedDelivery) -> IncidentReport:
            raise failure

        return await accept(request, delivery, unreadable)
    if reading.action == "follow":
        return await _follow(services, reading)
    report = reading.report
    submit = _held(services, reading.review_reason) if reading.action == "review" else None
    response = await accept(request, delivery, lambda _: report, submit)
    await _record_vehicle(services, reading)
    return response


def read_delivery(delivery: SignedDelivery) -> VehicleReading:
    """A JSON alert or a raw packet (by Content-Type, else by its first character)."""
    media = (delivery.content_type or "").split(";")[0].strip().lower()
    start = delivery.body.lstrip()[:1]
    if media == "text/plain" or (media != "application/json" and start == b"$"):
        return read_packet(
            delivery.body.decode("utf-8", errors="replace"),
            gateway_id=delivery.gateway_id,
            delivery_id=f"sha256:{delivery.body_sha256}",
        )
    parsed = parse_lenient(delivery.body, VehicleAlert, ("alert_id", "imei"))
    reading = read_alert(parsed.value, gateway_id=delivery.gateway_id)
    warnings = parsed.warnings + reading.report.warnings
    return replace(reading, report=replace(reading.report, warnings=warnings))


def _held(services: Services, reason: str | None) -> Submit:
    incidents = VehicleIncidents(services.settings.db_schema, services.dispatcher)

    async def submit(report: IncidentReport, key: str, body_sha256: str) -> IntakeResult:
        storable = report.storable(datetime.now(UTC))
        return await in_transaction(
            services.pool,
            lambda conn: incidents.hold_for_review(
                conn,
                storable,
                idempotency_key=key,
                body_sha256=body_sha256,
                reason=reason or "vehicle alert for an operator to check",
            ),
        )

    return submit


async def _follow(services: Services, reading: VehicleReading) -> JSONResponse:
    """Not an emergency: nothing is stored but the register and the vehicle's position."""
    incidents = VehicleIncidents(services.settings.db_schema, services.dispatcher)
    report = reading.report.storable(datetime.now(UTC))
    key, location, vehicle = reading.device_key, report.location, reading.vehicle
    actor = f"gateway:{report.gateway_id}"

    async def action(conn: Any) -> int | None:
        moved = None
        if key is not None and location is not None:
            moved = await incidents.follow(conn, key, location, actor=actor)
        if vehicle is not None:
            await record_device(conn, vehicle, actor=actor)
        return moved

    moved = await in_transaction(services.pool, action)
    answer = {
        "incident_id": None,
        "report_id": None,
        "status": "not_an_emergency",
        "duplicate_of": None,
        "warnings": list(report.warnings),
        "moved_incident": moved,
    }
    return JSONResponse(answer, status_code=202)


async def _record_vehicle(services: Services, reading: VehicleReading) -> None:
    """The register learns the vehicle after the incident is committed; a failure here
    costs the register an update, never the emergency its 202."""
    vehicle = reading.vehicle
    if vehicle is None:
        return
    try:
        await in_transaction(
            services.pool,
            lambda conn: record_device(conn, vehicle, actor=f"gateway:{reading.report.gateway_id}"),
        )
    except Exception as err:
        if is_transient(err):
            log.warning("vehicle register not updated (store unreachable): %s", err)
        else:
            log.exception("vehicle register not updated")

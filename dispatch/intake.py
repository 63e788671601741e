"""Intake: a normalised report from any gateway becomes a committed incident.

This is where a report enters the core: gateways build an IncidentReport; `Intake.submit`
stores it, places it in a zone, offers it to a unit and records every change as an
event, all in one transaction. The gateway answers 2xx only after that commit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from dispatch import idempotency
from dispatch.events import EventType, append_event
from dispatch.offers import Dispatcher, IncidentFacts
from geo.location import Location


@dataclass(frozen=True, slots=True)
class IncidentReport:
    """One report of an emergency, as a gateway normalised it."""

    channel: str
    gateway_id: str
    external_id: str
    sender: str
    incident_type: str
    location: Location | None
    payload: dict[str, Any]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """The gateway's answer: which incident the report became or joined."""

    incident_id: int
    report_id: int
    status: str
    duplicate_of: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON body of the 202 answer."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IntakeResult:
        """Rebuild a stored answer."""
        return cls(**data)


class Intake:
    """Turns reports into incidents."""

    def __init__(self, *, pool: asyncpg.Pool, schema: str, dispatcher: Dispatcher) -> None:
        self._pool = pool
        self._schema = schema
        self._dispatcher = dispatcher

    async def submit(
        self, report: IncidentReport, *, idempotency_key: str, body_sha256: str
    ) -> IntakeResult:
        """Commit the report as a new incident and try to offer it to a unit.

        Raises IdempotencyConflict when the key was used for another body.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            earlier = await idempotency.reserve(
                conn, gateway_id=report.gateway_id, key=idempotency_key, body_sha256=body_sha256
            )
            if earlier is not None:
                return IntakeResult.from_json(earlier)
            result = await self._create_incident(conn, report)
            await idempotency.complete(
                conn, gateway_id=report.gateway_id, key=idempotency_key, response=result.to_json()
            )
            return result

    async def _create_incident(
        self, conn: asyncpg.Connection, report: IncidentReport
    ) -> IntakeResult:
        kind = self._dispatcher.incident_type(report.incident_type)
        location = report.location
        zone = self._dispatcher.zones.zone_of(location.point) if location else None
        actor = f"gateway:{report.gateway_id}"
        status = "new" if location else "awaiting_location"
        columns = (
            (location.point.lat, location.point.lon, location.radius_m, location.method)
            if location
            else (None, None, None, None)
        )
        incident_id: int = await conn.fetchval(
            "INSERT INTO incidents (status, priority, type, lat, lon, radius_m,"
            " location_method, zone_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            status,
            kind.priority,
            kind.name,
            *columns,
            zone.id if zone else None,
        )
        report_id: int = await conn.fetchval(
            "INSERT INTO reports (incident_id, channel, gateway_id, external_id, sender, lat, lon,"
            " radius_m, location_method, location_time, payload, warnings)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            incident_id,
            report.channel,
            report.gateway_id,
            report.external_id,
            report.sender,
            *columns,
            location.time if location else None,
            report.payload,
            list(report.warnings),
        )
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_CREATED,
            actor=actor,
            incident_id=incident_id,
            data={
                "status": status,
                "priority": kind.priority,
                "type": kind.name,
                "channel": report.channel,
                "report_id": report_id,
                "location": location_json(location),
                "zone": {"id": zone.id, "name": zone.name} if zone else None,
                "warnings": list(report.warnings),
            },
        )
        if location is None:
            await self._dispatcher.escalate(
                conn, incident_id, actor=actor, reason="no usable location in the report"
            )
        elif zone is None:
            status = "queued"
            await self._dispatcher.queue(
                conn, incident_id, actor=actor, reason="location outside every jurisdiction"
            )
            await self._dispatcher.escalate(
                conn, incident_id, actor=actor, reason="location outside every jurisdiction"
            )
        else:
            facts = IncidentFacts(incident_id, kind, location.point, zone.id)
            offer = await self._dispatcher.offer_best_unit(conn, facts, actor=actor)
            if offer is not None:
                status = "offered"
            else:
                status = "queued"
                reason = "no available unit in reach"
                await self._dispatcher.queue(conn, incident_id, actor=actor, reason=reason)
                await self._dispatcher.escalate(conn, incident_id, actor=actor, reason=reason)
        return IntakeResult(incident_id, report_id, status, None, list(report.warnings))


def location_json(location: Location | None) -> dict[str, Any] | None:
    """A location as the API shows it: never a made-up 0,0, null while unknown."""
    if location is None:
        return None
    return {
        "lat": location.point.lat,
        "lon": location.point.lon,
        "radius_m": location.radius_m,
        "method": location.method,
    }

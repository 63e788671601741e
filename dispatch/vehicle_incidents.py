"""What vehicle alerts do to incidents beyond ``Intake.submit``: a report held for an
operator (a tamper alert: an incident nobody is offered), and a moving vehicle's fix
moving its open incident.

Both run in the caller's transaction, take the same per-sender lock as intake (one
device's alerts are taken one at a time), and write the rows and events intake writes
(``dispatch.incident_rows``), so an incident made here reads like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from dispatch import incident_log
from dispatch.core.correlate import is_better
from dispatch.events import EventType, append_event
from dispatch.incident_moves import IncidentMoves
from dispatch.incident_rows import (
    aware,
    created_data,
    finish_delivery,
    fix_time,
    insert_incident,
    insert_report,
    location_json,
    lock_senders,
    reserve_delivery,
)
from dispatch.offers import Dispatcher
from dispatch.readmodels import OPEN_STATUSES
from dispatch.reports import IncidentReport, IntakeResult
from geo.location import Location

# Once a unit is on scene it is with the vehicle: the incident stays where it met it.
_FOLLOWED_STATUSES = [s for s in OPEN_STATUSES if s != "on_scene"]


@dataclass(frozen=True, slots=True)
class VehicleIncidents:
    """Incident changes for the vehicle gateway, on one schema."""

    schema: str
    dispatcher: Dispatcher

    async def hold_for_review(
        self,
        conn: asyncpg.Connection,
        report: IncidentReport,
        *,
        idempotency_key: str,
        body_sha256: str,
        reason: str,
    ) -> IntakeResult:
        """Commit a report that must not send anyone by itself: it joins the device's open
        incident, or becomes one that is queued and escalated with ``reason``, with no
        agency to fill (the queue offers it nothing) until an operator assigns a unit
        or reclassifies it."""
        earlier = await reserve_delivery(
            conn, report, idempotency_key, body_sha256, lock_senders_of=self.schema
        )
        if earlier is not None:
            return earlier
        actor = f"gateway:{report.gateway_id}"
        open_id = await self._open_incident(conn, report.sender_keys, OPEN_STATUSES)
        if open_id is not None:
            result = await self._attach(conn, open_id, report, actor)
        else:
            result = await self._create_held(conn, report, actor, reason)
        await finish_delivery(
            conn, report, idempotency_key, result, self.dispatcher.metrics, new=open_id is None
        )
        return result

    async def follow(
        self, conn: asyncpg.Connection, device_key: str, location: Location, *, actor: str
    ) -> int | None:
        """Move the device's open incident (not yet reached by a unit) to its new fix when
        the fix is the better one (newer and at most twice as uncertain, or less
        uncertain): ``incident.location_updated``, which the console and the assigned
        MDTs receive. Returns the incident moved, or None."""
        await lock_senders(conn, self.schema, (device_key,))
        incident_id = await self._open_incident(conn, (device_key,), _FOLLOWED_STATUSES)
        if incident_id is None:
            return None
        moves = IncidentMoves(schema=self.schema, dispatcher=self.dispatcher)
        incident = await moves.load_open(conn, incident_id)
        if incident is None or incident.status not in _FOLLOWED_STATUSES:
            return None
        if not is_better(
            location,
            incident.location,
            new_time=fix_time(location),
            current_time=aware(incident.location_time),
        ):
            return None
        await moves.relocate(
            conn, incident, location, None, actor, reason="the vehicle moved (its tracker's fix)"
        )
        return incident_id

    async def _open_incident(
        self, conn: asyncpg.Connection, keys: tuple[str, ...], statuses: list[str] | tuple[str, ...]
    ) -> int | None:
        # Device keys match their open incident however old (as in intake).
        for key in keys:
            incident_id: int | None = await conn.fetchval(
                "SELECT r.incident_id FROM report_keys k JOIN reports r ON r.id = k.report_id"
                " JOIN incidents i ON i.id = r.incident_id"
                " WHERE k.key = $1 AND i.status = ANY($2::text[])"
                " ORDER BY k.received_at DESC LIMIT 1",
                key,
                list(statuses),
            )
            if incident_id is not None:
                return incident_id
        return None

    async def _attach(
        self, conn: asyncpg.Connection, incident_id: int, report: IncidentReport, actor: str
    ) -> IntakeResult:
        status: str = await conn.fetchval(
            "SELECT status FROM incidents WHERE id = $1 FOR UPDATE", incident_id
        )
        report_id = await insert_report(conn, incident_id, report)
        await append_event(
            conn,
            self.schema,
            EventType.INCIDENT_REPORT_ATTACHED,
            actor=actor,
            incident_id=incident_id,
            data={
                "report_id": report_id,
                "channel": report.channel,
                "sender": report.sender,
                "location": location_json(report.location),
                "warnings": list(report.warnings),
            },
        )
        return IntakeResult(incident_id, report_id, status, incident_id, list(report.warnings))

    async def _create_held(
        self, conn: asyncpg.Connection, report: IncidentReport, actor: str, reason: str
    ) -> IntakeResult:
        kind = self.dispatcher.incident_type(report.incident_type)
        location = report.location
        zone = self.dispatcher.locate(location.point) if location else None
        other_zones = self.dispatcher.other_zones(location, zone) if location else []
        incident_id = await insert_incident(conn, "queued", kind, location, zone, other_zones)
        # Nothing to fill: the queue worker offers only incidents with open slots.
        await conn.execute("UPDATE incidents SET unfilled = '{}' WHERE id = $1", incident_id)
        report_id = await insert_report(conn, incident_id, report)
        await append_event(
            conn,
            self.schema,
            EventType.INCIDENT_CREATED,
            actor=actor,
            incident_id=incident_id,
            data=created_data(
                "queued",
                kind,
                report.channel,
                report_id,
                location,
                zone,
                other_zones,
                list(report.warnings),
                held=reason,
            ),
        )
        await incident_log.wait(
            conn, self.schema, incident_id, actor=actor, reason=reason, escalation=reason
        )
        return IntakeResult(incident_id, report_id, "queued", None, list(report.warnings))

"""Intake: a normalised report from any gateway becomes a committed incident.

This is where a report enters the core: gateways build an IncidentReport; `Intake.submit`
either attaches it to the open incident it belongs to (same sender within a window, or
the same kind of emergency close by) or creates a new incident, places it in a zone,
offers it to a unit and records every change as an event, all in one transaction. The
gateway answers 2xx only after that commit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg

from dispatch import idempotency, incident_log
from dispatch.callers import caller_history
from dispatch.core.correlate import (
    CorrelationPolicy,
    is_better,
    may_join_nearby,
    sender_window_applies,
)
from dispatch.errors import DispatchError
from dispatch.events import EventType, append_event
from dispatch.group_commit import GroupCommit
from dispatch.incident_moves import IncidentMoves, OpenIncident
from dispatch.incident_rows import (
    aware,
    created_data,
    finish_delivery,
    fix_time,
    insert_incident_with_report,
    insert_report,
    location_json,
    reserve_delivery,
)
from dispatch.offers import Dispatcher
from dispatch.readmodels import OPEN_STATUSES
from dispatch.reports import IncidentReport, IntakeResult
from dispatch.retry import in_transaction
from dispatch.storable import clean_text
from geo.distance import distance_m
from geo.points import GeoPoint

log = logging.getLogger(__name__)


class Intake(IncidentMoves):
    """Turns reports into incidents."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        schema: str,
        dispatcher: Dispatcher,
        correlation: CorrelationPolicy | None = None,
        group_commit: bool = False,
    ) -> None:
        super().__init__(schema=schema, dispatcher=dispatcher)
        self._pool = pool
        self._correlation = correlation or CorrelationPolicy()
        # Reports arriving together committed together (each in its own savepoint), where
        # the deployment asks for it; else each in a transaction of its own.
        metrics = dispatcher.metrics
        self._group = (
            GroupCommit(
                pool, observe=metrics.intake_group_size.observe if metrics is not None else None
            )
            if group_commit
            else None
        )

    async def submit(
        self, report: IncidentReport, *, idempotency_key: str, body_sha256: str
    ) -> IntakeResult:
        """Commit the report, as a new incident or attached to the one it belongs to.

        Raises IdempotencyConflict when the key was used for another body.
        """
        report = report.storable(datetime.now(UTC))

        def work(conn: asyncpg.Connection) -> Awaitable[IntakeResult]:
            return self._submit_in(conn, report, idempotency_key, body_sha256)

        if self._group is not None:
            return await self._group.run(work)
        return await in_transaction(self._pool, work)

    async def keep_unprocessable(
        self, report: IncidentReport, *, idempotency_key: str, body_sha256: str, error: str
    ) -> IntakeResult:
        """The last line of defence: intake failed on this report for a reason that is
        not an outage (a bug). It is kept anyway, its raw bytes and the error with it,
        as an incident escalated to operators, with nothing else decided for it."""
        report = replace(report.storable(datetime.now(UTC)), location=None, payload={})
        return await in_transaction(
            self._pool,
            lambda conn: self._keep_in(conn, report, idempotency_key, body_sha256, error),
        )

    async def _keep_in(
        self,
        conn: asyncpg.Connection,
        report: IncidentReport,
        idempotency_key: str,
        body_sha256: str,
        error: str,
    ) -> IntakeResult:
        earlier = await reserve_delivery(conn, report, idempotency_key, body_sha256)
        if earlier is not None:
            return earlier
        try:
            kind = self._dispatcher.incident_type(report.incident_type)
        except DispatchError:
            kind = self._dispatcher.incident_type("other")
        error = clean_text(error)
        reason = (
            f"unprocessable report from gateway {report.gateway_id}, caller {report.sender}:"
            f" {error}; its raw content is kept on the report"
        )
        warnings = [*report.warnings, f"intake failed ({error}); kept for operators"]
        incident_id, report_id = await insert_incident_with_report(
            conn, "awaiting_location", kind, None, None, [], report, intake_error=error
        )
        actor = f"gateway:{report.gateway_id}"
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_CREATED,
            actor=actor,
            incident_id=incident_id,
            data=created_data(
                "awaiting_location",
                kind,
                report.channel,
                report_id,
                None,
                None,
                [],
                warnings,
                unprocessable=True,
            ),
        )
        await incident_log.escalate(conn, self._schema, incident_id, actor=actor, reason=reason)
        log.error(
            "kept an unprocessable report",
            extra={"incident_id": incident_id, "report_id": report_id, "channel": report.channel},
        )
        result = IntakeResult(incident_id, report_id, "awaiting_location", None, warnings)
        await idempotency.complete(
            conn, gateway_id=report.gateway_id, key=idempotency_key, response=result.to_json()
        )
        return result

    async def _submit_in(
        self,
        conn: asyncpg.Connection,
        report: IncidentReport,
        idempotency_key: str,
        body_sha256: str,
    ) -> IntakeResult:
        """The submission, inside its transaction (rerun whole if PostgreSQL aborts it)."""
        # One sender's burst (a panic button places five calls and sends an SMS at
        # once) must become one incident: reports of a sender are taken one at a time.
        earlier = await reserve_delivery(
            conn, report, idempotency_key, body_sha256, lock_senders_of=self._schema
        )
        if earlier is not None:
            return earlier
        target = await self._find_open_incident(conn, report)
        if target is None:
            result = await self._create_incident(conn, report)
        else:
            result = await self._attach(conn, report, target)
        log.info(
            "report %s",
            "made an incident" if target is None else "joined an incident",
            extra={
                "incident_id": result.incident_id,
                "report_id": result.report_id,
                "channel": report.channel,
                "gateway_id": report.gateway_id,
                "status": result.status,
            },
        )
        await finish_delivery(
            conn, report, idempotency_key, result, self._dispatcher.metrics, new=target is None
        )
        return result

    async def _find_open_incident(
        self, conn: asyncpg.Connection, report: IncidentReport
    ) -> OpenIncident | None:
        policy = self._correlation
        for key in report.sender_keys:
            incident_id = await conn.fetchval(
                "SELECT r.incident_id FROM report_keys k"
                " JOIN reports r ON r.id = k.report_id"
                " JOIN incidents i ON i.id = r.incident_id"
                " WHERE k.key = $1 AND i.status = ANY($2::text[])"
                " AND ($3::float8 IS NULL OR k.received_at > now() - make_interval(secs => $3))"
                " ORDER BY k.received_at DESC LIMIT 1",
                key,
                list(OPEN_STATUSES),
                policy.same_sender_window_s if sender_window_applies(key) else None,
            )
            if incident_id is not None:
                found = await self.load_open(conn, incident_id)
                if found is not None:
                    return found
        kind = self._dispatcher.incident_type(report.incident_type)
        if report.location is None or not may_join_nearby(kind.name):
            return None
        point = report.location.point
        # A box a little larger than the radius narrows the candidates; the exact
        # geodesic test is done here.
        dlat = policy.nearby_radius_m / 111_000 * 1.5
        dlon = dlat / max(0.1, math.cos(math.radians(point.lat)))
        rows = await conn.fetch(
            "SELECT id, lat, lon FROM incidents WHERE status = ANY($1::text[]) AND type = $2"
            " AND created_at > now() - make_interval(secs => $3)"
            " AND lat BETWEEN $4 AND $5 AND lon BETWEEN $6 AND $7",
            list(OPEN_STATUSES),
            kind.name,
            policy.nearby_window_s,
            point.lat - dlat,
            point.lat + dlat,
            point.lon - dlon,
            point.lon + dlon,
        )
        near = [(distance_m(point, GeoPoint(lat=r["lat"], lon=r["lon"])), r["id"]) for r in rows]
        near = [n for n in near if n[0] <= policy.nearby_radius_m]
        if not near:
            return None
        return await self.load_open(conn, min(near)[1])

    async def _create_incident(
        self, conn: asyncpg.Connection, report: IncidentReport
    ) -> IntakeResult:
        kind = self._dispatcher.incident_type(report.incident_type)
        location = report.location
        zone = self._dispatcher.locate(location.point) if location else None
        other_zones = self._dispatcher.other_zones(location, zone) if location else []
        actor = f"gateway:{report.gateway_id}"
        if report.silent:
            # Nobody spoke: operators call back before anyone is sent. Most such calls
            # are pocket dials, and phones send AML with every 112 call, so a location
            # alone does not make it an emergency; a panic or a spoken report does.
            status = "callback"
        elif location is not None:
            status = "new"
        else:
            status = "awaiting_location"
        # The event reaches the desks of this incident's zone (all desks when it has
        # none): they may see the ids of earlier incidents in that same zone only. Read
        # before this incident exists, so it is not its own history.
        here = zone.id if zone else None
        history = await caller_history(
            conn,
            list(report.sender_keys),
            shows_id=lambda there: there is None or there == here,
        )
        incident_id, report_id = await insert_incident_with_report(
            conn, status, kind, location, zone, other_zones, report
        )
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_CREATED,
            actor=actor,
            incident_id=incident_id,
            data=created_data(
                status,
                kind,
                report.channel,
                report_id,
                location,
                zone,
                other_zones,
                list(report.warnings),
                silent=report.silent,
                caller_history=history,
                triage=report.payload.get("triage"),
            ),
        )
        if status == "callback":
            await append_event(
                conn,
                self._schema,
                EventType.INCIDENT_CALLBACK_REQUESTED,
                actor=actor,
                incident_id=incident_id,
                data={"number": report.sender, "flags": history["flags"]},
            )
        elif location is None:
            await incident_log.escalate(
                conn,
                self._schema,
                incident_id,
                actor=actor,
                reason="no usable location in the report",
            )
        else:
            status = await self.dispatch_located(
                conn, incident_id, kind, location, zone, actor, fresh=True
            )
        return IntakeResult(incident_id, report_id, status, None, list(report.warnings))

    async def _attach(
        self, conn: asyncpg.Connection, report: IncidentReport, incident: OpenIncident
    ) -> IntakeResult:
        actor = f"gateway:{report.gateway_id}"
        report_id = await insert_report(conn, incident.id, report)
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_REPORT_ATTACHED,
            actor=actor,
            incident_id=incident.id,
            data={
                "report_id": report_id,
                "channel": report.channel,
                "sender": report.sender,
                "location": location_json(report.location),
                "warnings": list(report.warnings),
            },
        )
        status = incident.status
        kind = self._dispatcher.incident_type(report.incident_type)
        if kind.priority < incident.type.priority:
            # A panic joining a blank call makes it a priority-1 emergency.
            await incident_log.reclassify(
                conn, self._schema, incident.id, kind, actor=actor, reason=f"report {report_id}"
            )
            incident = replace(incident, type=kind)
        best = incident.location
        new = report.location
        if new is not None and is_better(
            new,
            incident.location,
            new_time=fix_time(new),
            current_time=aware(incident.location_time),
        ):
            best = new
            await self.relocate(conn, incident, new, report_id, actor)
        # Someone did reach 112 after a blank call (a spoken call, a panic, an SMS):
        # no more a callback but an emergency. A waiting incident that got its first
        # location can now be dispatched.
        genuine = status == "callback" and not report.silent
        located = status == "awaiting_location" and best is not None
        if genuine or located:
            status = await self.release(
                conn, incident, best, actor, unlocated="no usable location in the report"
            )
        return IntakeResult(incident.id, report_id, status, incident.id, list(report.warnings))

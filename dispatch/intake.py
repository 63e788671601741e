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
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import asyncpg

from dispatch import idempotency, incident_log
from dispatch.callers import caller_history
from dispatch.core.correlate import (
    CorrelationPolicy,
    best_fix,
    is_better,
    may_join_nearby,
    sender_window_applies,
)
from dispatch.core.facts import IncidentFacts
from dispatch.errors import DispatchError, InvalidTransition, NotFound
from dispatch.events import EventType, append_event
from dispatch.incident_rows import (
    aware,
    created_data,
    fix_time,
    insert_incident,
    insert_report,
    location_columns,
    location_json,
    reserve_delivery,
    row_location,
)
from dispatch.incident_types import IncidentType
from dispatch.offers import Dispatcher
from dispatch.readmodels import OPEN_STATUSES
from dispatch.reports import IncidentReport, IntakeResult
from dispatch.retry import in_transaction
from dispatch.storable import clean_text
from geo.distance import distance_m
from geo.location import Location
from geo.points import GeoPoint
from geo.zones import Zone

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _OpenIncident:
    id: int
    status: str
    type: IncidentType
    location: Location | None
    location_time: datetime | None


class Intake:
    """Turns reports into incidents."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        schema: str,
        dispatcher: Dispatcher,
        correlation: CorrelationPolicy | None = None,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._dispatcher = dispatcher
        self._correlation = correlation or CorrelationPolicy()

    async def submit(
        self, report: IncidentReport, *, idempotency_key: str, body_sha256: str
    ) -> IntakeResult:
        """Commit the report, as a new incident or attached to the one it belongs to.

        Raises IdempotencyConflict when the key was used for another body.
        """
        report = report.storable(datetime.now(UTC))
        return await in_transaction(
            self._pool, lambda conn: self._submit_in(conn, report, idempotency_key, body_sha256)
        )

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
        incident_id = await insert_incident(conn, "awaiting_location", kind, None, None, [])
        report_id = await insert_report(conn, incident_id, report, intake_error=error)
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
        earlier = await reserve_delivery(conn, report, idempotency_key, body_sha256)
        if earlier is not None:
            return earlier
        # One sender's burst (a panic button places five calls and sends an SMS at
        # once) must become one incident: reports of a sender are taken one at a time.
        for key in sorted(set(report.sender_keys)):
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"{self._schema}:{key}"
            )
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
        metrics = self._dispatcher.metrics
        if metrics is not None:
            outcome = "new" if target is None else "attached"
            metrics.reports.labels(report.channel, outcome).inc()
            if target is None:
                metrics.incidents.labels(report.channel, result.status).inc()
        await idempotency.complete(
            conn, gateway_id=report.gateway_id, key=idempotency_key, response=result.to_json()
        )
        return result

    async def _find_open_incident(
        self, conn: asyncpg.Connection, report: IncidentReport
    ) -> _OpenIncident | None:
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
                found = await self._load_open(conn, incident_id)
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
        return await self._load_open(conn, min(near)[1])

    async def _load_open(self, conn: asyncpg.Connection, incident_id: int) -> _OpenIncident | None:
        # The lookup ran without a lock; an operator may have closed or merged the
        # incident since. Under the row lock its status is final: only an open incident
        # may take the report.
        row = await conn.fetchrow(
            "SELECT id, status, type, lat, lon, radius_m, location_method, location_time"
            " FROM incidents WHERE id = $1 FOR UPDATE",
            incident_id,
        )
        if row is None or row["status"] not in OPEN_STATUSES:
            return None
        location = row_location(row)
        return _OpenIncident(
            row["id"],
            row["status"],
            self._dispatcher.incident_type(row["type"]),
            location,
            row["location_time"],
        )

    async def split(
        self, conn: asyncpg.Connection, report_id: int, *, actor: str, reason: str
    ) -> int:
        """Take a wrongly attached report out of its incident into a new incident of
        its own, dispatched like any new one; returns the new incident's id.

        NotFound for an unknown report; InvalidTransition when its incident is no
        longer open or the report is its only one.
        """
        row = await conn.fetchrow(
            "SELECT r.incident_id, r.channel, r.lat, r.lon, r.radius_m, r.location_method,"
            " r.location_time, r.silent, r.warnings, i.status, i.type,"
            " (r.lat, r.lon, r.radius_m) IS NOT DISTINCT FROM (i.lat, i.lon, i.radius_m)"
            " AS placed_it FROM reports r"
            " JOIN incidents i ON i.id = r.incident_id WHERE r.id = $1 FOR UPDATE OF i",
            report_id,
        )
        if row is None:
            raise NotFound("report", report_id)
        old: int = row["incident_id"]
        if row["status"] not in OPEN_STATUSES:
            raise InvalidTransition("incident", old, row["status"], "split")
        others = await conn.fetchval(
            "SELECT count(*) FROM reports WHERE incident_id = $1 AND id <> $2", old, report_id
        )
        if others == 0:
            raise InvalidTransition(
                "report", report_id, f"the only report of incident {old}", "split off"
            )
        kind = self._dispatcher.incident_type(row["type"])
        location = row_location(row)
        zone = self._dispatcher.locate(location.point) if location else None
        status = "callback" if row["silent"] else "new" if location else "awaiting_location"
        other_zones = self._dispatcher.other_zones(location, zone) if location else []
        new = await insert_incident(conn, status, kind, location, zone, other_zones)
        await conn.execute("UPDATE reports SET incident_id = $2 WHERE id = $1", report_id, new)
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_REPORT_DETACHED,
            actor=actor,
            incident_id=old,
            data={"report_id": report_id, "to": new, "reason": reason},
        )
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_CREATED,
            actor=actor,
            incident_id=new,
            data=created_data(
                status,
                kind,
                row["channel"],
                report_id,
                location,
                zone,
                other_zones,
                row["warnings"],
                split_from=old,
                reason=reason,
            ),
        )
        if location is not None and row["placed_it"]:
            await self._restore_location(conn, old, report_id, actor)
        if location is not None and status == "new":
            await self._dispatch_located(conn, new, kind, location, zone, actor, fresh=True)
        elif status == "awaiting_location":
            await incident_log.escalate(
                conn, self._schema, new, actor=actor, reason="no usable location in the report"
            )
        return new

    async def _restore_location(
        self, conn: asyncpg.Connection, incident_id: int, report_id: int, actor: str
    ) -> None:
        """The incident's location was the split-off report's: back to the best fix of
        the reports it keeps, or, with none, operators are asked to place it."""
        incident = await self._load_open(conn, incident_id)
        if incident is None:
            return
        rows = await conn.fetch(
            "SELECT lat, lon, radius_m, location_method, location_time FROM reports"
            " WHERE incident_id = $1 AND lat IS NOT NULL ORDER BY received_at, id",
            incident_id,
        )
        fixes = [(loc, aware(r["location_time"])) for r in rows if (loc := row_location(r))]
        best = best_fix(fixes)
        if best is None:
            reason = (
                f"its location came from report {report_id}, split off, and no other report"
                " has one: place it from the caller"
            )
            await incident_log.escalate(conn, self._schema, incident_id, actor=actor, reason=reason)
            return
        current = incident.location
        if current is not None and (best.point, best.radius_m) == (current.point, current.radius_m):
            return  # its own reports put it where it is already
        await self._relocate(
            conn,
            incident,
            best,
            None,
            actor,
            reason=f"report {report_id} was split off: the best fix of its own reports",
        )

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
        incident_id = await insert_incident(conn, status, kind, location, zone, other_zones)
        report_id = await insert_report(conn, incident_id, report)
        # The event reaches the desks of this incident's zone (all desks when it has
        # none): they may see the ids of earlier incidents in that same zone only.
        here = zone.id if zone else None
        history = await caller_history(
            conn,
            list(report.sender_keys),
            exclude_incident=incident_id,
            shows_id=lambda there: there is None or there == here,
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
            status = await self._dispatch_located(
                conn, incident_id, kind, location, zone, actor, fresh=True
            )
        return IntakeResult(incident_id, report_id, status, None, list(report.warnings))

    async def _dispatch_located(
        self,
        conn: asyncpg.Connection,
        incident_id: int,
        kind: IncidentType,
        location: Location,
        zone: Zone | None,
        actor: str,
        *,
        fresh: bool = False,
    ) -> str:
        """Offer a newly located incident a unit for each agency of its plan (``fresh``:
        reported just now); returns its status afterwards."""
        if zone is None:
            reason = self._dispatcher.outside_reason(location.point)
            await incident_log.wait(conn, self._schema, incident_id, actor=actor, reason=reason)
            await incident_log.escalate(conn, self._schema, incident_id, actor=actor, reason=reason)
            return "queued"
        facts = IncidentFacts(incident_id, kind, location.point, zone.id)
        if not fresh:
            # Placed or confirmed later: it has waited since its report.
            facts = await self._dispatcher.load_facts(conn, incident_id) or facts
        filled = await self._dispatcher.fill(conn, facts, actor=actor, fresh=fresh)
        verdict = filled.verdict
        if verdict.wait_reason is None:
            return "offered"
        status = await incident_log.wait(
            conn, self._schema, incident_id, actor=actor, reason=verdict.wait_reason
        )
        if verdict.escalate_reason is not None:
            await incident_log.escalate(
                conn, self._schema, incident_id, actor=actor, reason=verdict.escalate_reason
            )
        return status

    async def _attach(
        self, conn: asyncpg.Connection, report: IncidentReport, incident: _OpenIncident
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
            await self._relocate(conn, incident, new, report_id, actor)
        # Someone did reach 112 after a blank call (a spoken call, a panic, an SMS):
        # no more a callback but an emergency. A waiting incident that got its first
        # location can now be dispatched.
        genuine = status == "callback" and not report.silent
        located = status == "awaiting_location" and best is not None
        if genuine or located:
            status = await self._release(
                conn, incident, best, actor, unlocated="no usable location in the report"
            )
        return IntakeResult(incident.id, report_id, status, incident.id, list(report.warnings))

    async def _release(
        self,
        conn: asyncpg.Connection,
        incident: _OpenIncident,
        best: Location | None,
        actor: str,
        *,
        unlocated: str,
    ) -> str:
        """A callback confirmed, or a waiting incident located: dispatch it where it is,
        or leave it escalated for a location (``unlocated`` says why); its new status."""
        if best is None:
            await conn.execute(
                "UPDATE incidents SET status = 'awaiting_location', updated_at = now()"
                " WHERE id = $1",
                incident.id,
            )
            await incident_log.escalate(
                conn, self._schema, incident.id, actor=actor, reason=unlocated
            )
            return "awaiting_location"
        await conn.execute("UPDATE incidents SET status = 'new' WHERE id = $1", incident.id)
        zone = self._dispatcher.locate(best.point)
        return await self._dispatch_located(conn, incident.id, incident.type, best, zone, actor)

    async def place(
        self,
        conn: asyncpg.Connection,
        incident_id: int,
        location: Location,
        *,
        actor: str,
        reason: str,
    ) -> str:
        """An operator's location for the incident (a caller's words, geocoded): it
        replaces the current one (a report's later fix replaces it in turn by the rule
        between reports: less uncertain, or newer and at most twice as uncertain); an
        incident that waited for a location, or for a
        unit (e.g. it was placed outside every jurisdiction), is dispatched at once.
        Returns its status. NotFound, or InvalidTransition when closed."""
        incident = await self._open_or_raise(conn, incident_id, "placed")
        await self._relocate(conn, incident, location, None, actor, reason=reason)
        if incident.status == "awaiting_location":
            return await self._release(conn, incident, location, actor, unlocated="")
        if incident.status == "queued":
            zone = self._dispatcher.locate(location.point)
            return await self._dispatch_located(
                conn, incident.id, incident.type, location, zone, actor
            )
        return incident.status

    async def confirm(
        self, conn: asyncpg.Connection, incident_id: int, *, actor: str, reason: str
    ) -> str:
        """The call-taker called a silent call back and found an emergency: it is
        dispatched like a spoken report, or waits escalated for a location. Returns its
        status. InvalidTransition unless it awaits a callback."""
        incident = await self._open_or_raise(conn, incident_id, "confirmed")
        if incident.status != "callback":
            raise InvalidTransition("incident", incident_id, incident.status, "confirmed")
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_CONFIRMED,
            actor=actor,
            incident_id=incident_id,
            data={"reason": reason},
        )
        return await self._release(
            conn,
            incident,
            incident.location,
            actor,
            unlocated="confirmed after a callback, with no location: place it from the caller",
        )

    async def _open_or_raise(
        self, conn: asyncpg.Connection, incident_id: int, change: str
    ) -> _OpenIncident:
        incident = await self._load_open(conn, incident_id)
        if incident is not None:
            return incident
        status = await conn.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id)
        if status is None:
            raise NotFound("incident", incident_id)
        raise InvalidTransition("incident", incident_id, status, change)

    async def _relocate(
        self,
        conn: asyncpg.Connection,
        incident: _OpenIncident,
        new: Location,
        report_id: int | None,
        actor: str,
        *,
        reason: str | None = None,
    ) -> None:
        """Move the incident to a better fix (and maybe another zone), as an event: a
        report's (``report_id``), or an operator's (no report, a ``reason``)."""
        zone = self._dispatcher.locate(new.point)
        other_zones = self._dispatcher.other_zones(new, zone)
        await conn.execute(
            "UPDATE incidents SET lat = $2, lon = $3, radius_m = $4, location_method = $5,"
            " zone_id = $6, location_time = $7, other_zones = $8, updated_at = now()"
            " WHERE id = $1",
            incident.id,
            *location_columns(new),
            zone.id if zone else None,
            fix_time(new),
            other_zones,
        )
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_LOCATION_UPDATED,
            actor=actor,
            incident_id=incident.id,
            data={
                "report_id": report_id,
                "location": location_json(new),
                "zone": {"id": zone.id, "name": zone.name} if zone else None,
                "previous": location_json(incident.location),
                **({"reason": reason} if reason is not None else {}),
            },
        )

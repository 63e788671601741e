"""Where an open incident stands and whether it can be dispatched: it is located and
offered, released when a callback is confirmed or a location arrives, moved to a better
fix, placed by an operator, or loses a wrongly joined report (split).

The gateway intake (dispatch.intake) and the operators' actions share these steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from dispatch import incident_log
from dispatch.core.correlate import best_fix
from dispatch.core.facts import IncidentFacts
from dispatch.errors import InvalidTransition, NotFound
from dispatch.events import EventType, append_event
from dispatch.incident_rows import (
    aware,
    created_data,
    fix_time,
    insert_incident,
    location_columns,
    location_json,
    row_location,
)
from dispatch.incident_types import IncidentType
from dispatch.offers import Dispatcher
from dispatch.readmodels import OPEN_STATUSES
from geo.location import Location
from geo.zones import Zone


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """An open incident as these steps read it, under its row lock."""

    id: int
    status: str
    type: IncidentType
    location: Location | None
    location_time: datetime | None


class IncidentMoves:
    """Locating, releasing, relocating, placing, confirming and splitting incidents, in
    the caller's transaction."""

    def __init__(self, *, schema: str, dispatcher: Dispatcher) -> None:
        self._schema = schema
        self._dispatcher = dispatcher

    async def load_open(self, conn: asyncpg.Connection, incident_id: int) -> OpenIncident | None:
        """The incident under its row lock, or None if it is no longer open."""
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
        return OpenIncident(
            row["id"],
            row["status"],
            self._dispatcher.incident_type(row["type"]),
            location,
            row["location_time"],
        )

    async def dispatch_located(
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
            await incident_log.wait(
                conn, self._schema, incident_id, actor=actor, reason=reason, escalation=reason
            )
            return "queued"
        facts = IncidentFacts(incident_id, kind, location.point, zone.id)
        if not fresh:
            # Placed or confirmed later: it has waited since its report.
            facts = await self._dispatcher.load_facts(conn, incident_id) or facts
        filled = await self._dispatcher.fill(conn, facts, actor=actor, fresh=fresh)
        verdict = filled.verdict
        if verdict.wait_reason is None:
            return "offered"
        return await incident_log.wait(
            conn,
            self._schema,
            incident_id,
            actor=actor,
            reason=verdict.wait_reason,
            escalation=verdict.escalate_reason,
        )

    async def release(
        self,
        conn: asyncpg.Connection,
        incident: OpenIncident,
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
        return await self.dispatch_located(conn, incident.id, incident.type, best, zone, actor)

    async def relocate(
        self,
        conn: asyncpg.Connection,
        incident: OpenIncident,
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

    async def _restore_location(
        self, conn: asyncpg.Connection, incident_id: int, report_id: int, actor: str
    ) -> None:
        """The incident's location was the split-off report's: back to the best fix of
        the reports it keeps, or, with none, operators are asked to place it."""
        incident = await self.load_open(conn, incident_id)
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
        await self.relocate(
            conn,
            incident,
            best,
            None,
            actor,
            reason=f"report {report_id} was split off: the best fix of its own reports",
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
            await self.dispatch_located(conn, new, kind, location, zone, actor, fresh=True)
        elif status == "awaiting_location":
            await incident_log.escalate(
                conn, self._schema, new, actor=actor, reason="no usable location in the report"
            )
        return new

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
        await self.relocate(conn, incident, location, None, actor, reason=reason)
        if incident.status == "awaiting_location":
            return await self.release(conn, incident, location, actor, unlocated="")
        if incident.status == "queued":
            zone = self._dispatcher.locate(location.point)
            return await self.dispatch_located(
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
        return await self.release(
            conn,
            incident,
            incident.location,
            actor,
            unlocated="confirmed after a callback, with no location: place it from the caller",
        )

    async def _open_or_raise(
        self, conn: asyncpg.Connection, incident_id: int, change: str
    ) -> OpenIncident:
        incident = await self.load_open(conn, incident_id)
        if incident is not None:
            return incident
        status = await conn.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id)
        if status is None:
            raise NotFound("incident", incident_id)
        raise InvalidTransition("incident", incident_id, status, change)

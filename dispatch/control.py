"""Operator control: assign or reassign by hand, cancel an offer, note, merge, close,
take units in and out of service. Each runs in the caller's transaction and records
its events; each refusal says what the operator can do instead.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from dispatch import incident_log
from dispatch.crew import KEEP_POST
from dispatch.errors import IncidentNotLocated, InvalidTransition, NotFound
from dispatch.events import EventType, NewEvent, append_event, append_events
from dispatch.offer_rows import Offer
from dispatch.offers import Dispatcher
from dispatch.readmodels import OPEN_STATUSES

# Statuses an operator may set directly, and only for a unit with no active job.
OPERATOR_UNIT_STATUSES = frozenset({"available", "off_duty", "out_of_service"})
_ENGAGED = frozenset({"offered", "dispatched", "en_route", "on_scene"})
# Incidents whose plan is being served: not those awaiting a callback or a location,
# which a new type alone does not release.
_DISPATCHABLE = frozenset({"new", "queued", "offered", "dispatched", "on_scene"})


class Control:
    """The operator commands."""

    def __init__(self, *, schema: str, dispatcher: Dispatcher) -> None:
        self._schema = schema
        self._dispatcher = dispatcher

    async def _open_incident(self, conn: asyncpg.Connection, incident_id: int) -> str:
        status = await conn.fetchval(
            "SELECT status FROM incidents WHERE id = $1 FOR UPDATE", incident_id
        )
        if status is None:
            raise NotFound("incident", incident_id)
        if status not in OPEN_STATUSES:
            raise InvalidTransition("incident", incident_id, status, "changed")
        return str(status)

    async def _release_assignments(
        self,
        conn: asyncpg.Connection,
        incident_id: int,
        *,
        actor: str,
        reason: str,
        agency: str | None = None,
        assignment_id: int | None = None,
    ) -> list[str]:
        """End the incident's active assignments (all, one agency's, or one) and free
        their units; the plan's slots they held need a unit again."""
        rows = await conn.fetch(
            "UPDATE assignments SET status = 'cancelled', responded_at = coalesce(responded_at,"
            " now()) WHERE incident_id = $1 AND status IN ('offered', 'accepted')"
            " AND ($2::text IS NULL OR agency = $2) AND ($3::bigint IS NULL OR id = $3)"
            " RETURNING id, unit_id, agency",
            incident_id,
            agency,
            assignment_id,
        )
        freed: list[str] = []
        for row in rows:
            old = await conn.fetchval(
                "SELECT status FROM units WHERE id = $1 FOR UPDATE", row["unit_id"]
            )
            await conn.execute(
                # A crew taken off a job is not at its old standby post; one whose offer
                # was withdrawn never left for it (as after a decline).
                "UPDATE units SET status = 'available', updated_at = now(),"
                " post_lat = CASE WHEN $2 = 'offered' THEN post_lat END,"
                " post_lon = CASE WHEN $2 = 'offered' THEN post_lon END WHERE id = $1",
                row["unit_id"],
                old,
            )
            await append_events(
                conn,
                self._schema,
                [
                    NewEvent(
                        EventType.ASSIGNMENT_CANCELLED,
                        actor,
                        incident_id,
                        row["unit_id"],
                        {"assignment_id": row["id"], "reason": reason},
                    ),
                    incident_log.unit_status_change(
                        row["unit_id"], old, "available", actor, assignment_id=row["id"]
                    ),
                ],
            )
            await incident_log.reopen(conn, incident_id, row["agency"])
            freed.append(row["unit_id"])
        return freed

    async def assign(
        self, conn: asyncpg.Connection, incident_id: int, unit_id: str, *, actor: str, reason: str
    ) -> Offer:
        """Offer the incident to the chosen unit, taking it off the unit of the same
        agency it had (a reassignment); other agencies' units stay."""
        await self._open_incident(conn, incident_id)
        facts = await self._dispatcher.load_facts(conn, incident_id)
        if facts is None:
            raise IncidentNotLocated(incident_id)
        agency = await conn.fetchval("SELECT agency FROM units WHERE id = $1", unit_id)
        if agency is None:
            raise NotFound("unit", unit_id)
        await self._release_assignments(
            conn,
            incident_id,
            actor=actor,
            reason=f"reassigned to {unit_id}: {reason}",
            agency=agency,
        )
        return await self._dispatcher.offer_unit(conn, facts, unit_id, actor=actor, reason=reason)

    async def cancel_assignment(
        self, conn: asyncpg.Connection, assignment_id: int, *, actor: str, reason: str
    ) -> int:
        """Take an offer or assignment off its unit; the incident waits for another."""
        incident_id: int | None = await conn.fetchval(
            "SELECT incident_id FROM assignments WHERE id = $1", assignment_id
        )
        if incident_id is None:
            raise NotFound("assignment", assignment_id)
        await self._open_incident(conn, incident_id)
        # Read the status under lock: the crew may have answered or finished since the
        # first read, and cancelling a finished job would send the incident back to wait.
        status = await conn.fetchval(
            "SELECT status FROM assignments WHERE id = $1 FOR UPDATE", assignment_id
        )
        if status not in ("offered", "accepted"):
            raise InvalidTransition("assignment", assignment_id, status, "cancelled")
        await self._release_assignments(
            conn, incident_id, actor=actor, reason=reason, assignment_id=assignment_id
        )
        await incident_log.wait(
            conn, self._schema, incident_id, actor=actor, reason=f"assignment cancelled: {reason}"
        )
        return incident_id

    async def classify(
        self, conn: asyncpg.Connection, incident_id: int, type_name: str, *, actor: str, reason: str
    ) -> None:
        """Set the incident's type as the call-taker judges it (priority and plan follow).

        The new plan's open slots are served in the same transaction, so the answer
        shows their offers, and an agency with no unit at all waits and is escalated at
        once (not when an unrelated offer expires)."""
        kind = self._dispatcher.known_type(type_name)
        status = await self._open_incident(conn, incident_id)
        await incident_log.reclassify(
            conn, self._schema, incident_id, kind, actor=actor, reason=reason
        )
        if status in _DISPATCHABLE:
            await self._dispatcher.reoffer(conn, incident_id, actor=actor)

    async def add_note(
        self, conn: asyncpg.Connection, incident_id: int, *, actor: str, text: str
    ) -> int:
        """Attach an operator's note to the incident's timeline; returns the event id."""
        exists = await conn.fetchval("SELECT true FROM incidents WHERE id = $1", incident_id)
        if not exists:
            raise NotFound("incident", incident_id)
        return await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_NOTE_ADDED,
            actor=actor,
            incident_id=incident_id,
            data={"text": text},
        )

    async def close(
        self, conn: asyncpg.Connection, incident_id: int, *, actor: str, disposition: str
    ) -> None:
        """Close the incident with a disposition, freeing its units."""
        await self._open_incident(conn, incident_id)
        freed = await self._release_assignments(
            conn, incident_id, actor=actor, reason=f"incident closed: {disposition}"
        )
        await conn.execute(
            "UPDATE incidents SET status = 'closed', disposition = $2, closed_at = now(),"
            " updated_at = now() WHERE id = $1",
            incident_id,
            disposition,
        )
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_CLOSED,
            actor=actor,
            incident_id=incident_id,
            data={"disposition": disposition, "incident_status": "closed", "freed_units": freed},
        )

    async def merge(
        self, conn: asyncpg.Connection, incident_id: int, into_id: int, *, actor: str
    ) -> list[int]:
        """Fold a duplicate into another open incident; returns the report ids moved."""
        if incident_id == into_id:
            raise InvalidTransition("incident", incident_id, "itself", "merged into itself")
        # Lock both in id order so two opposite merges cannot deadlock.
        for ident in sorted((incident_id, into_id)):
            await self._open_incident(conn, ident)
        await self._release_assignments(
            conn, incident_id, actor=actor, reason=f"merged into incident {into_id}"
        )
        moved = [
            r["id"]
            for r in await conn.fetch(
                "UPDATE reports SET incident_id = $2 WHERE incident_id = $1 RETURNING id",
                incident_id,
                into_id,
            )
        ]
        await conn.execute(
            "UPDATE incidents SET status = 'merged', merged_into = $2, closed_at = now(),"
            " updated_at = now() WHERE id = $1",
            incident_id,
            into_id,
        )
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_MERGED,
            actor=actor,
            incident_id=incident_id,
            data={"into": into_id, "report_ids": moved, "incident_status": "merged"},
        )
        for report_id in moved:
            await append_event(
                conn,
                self._schema,
                EventType.INCIDENT_REPORT_ATTACHED,
                actor=actor,
                incident_id=into_id,
                data={"report_id": report_id, "from_incident": incident_id},
            )
        return moved

    async def set_unit_status(
        self, conn: asyncpg.Connection, unit_id: str, *, actor: str, status: str, reason: str
    ) -> dict[str, Any]:
        """Put a unit in or out of service (or off duty) when it holds no job."""
        current = await conn.fetchval("SELECT status FROM units WHERE id = $1 FOR UPDATE", unit_id)
        if current is None:
            raise NotFound("unit", unit_id)
        if status not in OPERATOR_UNIT_STATUSES or current in _ENGAGED or current == status:
            raise InvalidTransition("unit", unit_id, current, status)
        await conn.execute(
            f"UPDATE units SET status = $2, updated_at = now(), {KEEP_POST} WHERE id = $1",
            unit_id,
            status,
        )
        await append_events(
            conn,
            self._schema,
            [incident_log.unit_status_change(unit_id, current, status, actor, reason=reason)],
        )
        return {"unit_id": unit_id, "status": status}

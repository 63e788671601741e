"""An incident's state changes that every part of dispatch records the same way: it
waits (and why), it is escalated to operators (once per reason), a slot of its plan
reopens, it gets another type, a unit's status changes, its last crew finished.

Each writes its row and appends its event in the caller's transaction; the decisions
of when to call them are the core's (dispatch.core.plans) and the shell's.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from dispatch.errors import NotFound
from dispatch.events import EventType, NewEvent, append_event, notify_channel
from dispatch.incident_types import IncidentType
from dispatch.readmodels import READY_TO_CLOSE_SQL

# Each of these writes the row and appends its event in one statement (one NOTIFY).
# Waiting and escalating stay two: "escalated for this reason the first time" must be
# read from the row under its lock, as the UPDATE's WHERE does; the row as it was before
# a statement that also updates it is only the statement's snapshot.
_WAIT = (
    "WITH upd AS (UPDATE incidents SET updated_at = now(), waiting_reason = $2,"
    " status = CASE WHEN EXISTS (SELECT 1 FROM assignments WHERE incident_id = $1"
    " AND status IN ('offered', 'accepted')) THEN status ELSE 'queued' END"
    " WHERE id = $1 RETURNING status, unfilled, zone_id),"
    " ev AS (INSERT INTO events (type, actor, incident_id, data, zone_id)"
    " SELECT $4, $3, $1, jsonb_build_object('incident_status', upd.status,"
    " 'reason', $2::text, 'waiting_for', to_jsonb(upd.unfilled)), upd.zone_id FROM upd)"
    " SELECT upd.status FROM upd, pg_notify($5, '')"
)
_ESCALATE = (
    "WITH upd AS (UPDATE incidents SET escalated = true, escalation_reason = $2,"
    " updated_at = now() WHERE id = $1"
    " AND (NOT escalated OR escalation_reason IS DISTINCT FROM $2) RETURNING zone_id),"
    " ev AS (INSERT INTO events (type, actor, incident_id, data, zone_id)"
    " SELECT $4, $3, $1, jsonb_build_object('reason', $2::text), upd.zone_id FROM upd)"
    " SELECT count(*) FROM upd, pg_notify($5, '')"
)


async def wait(
    conn: asyncpg.Connection,
    schema: str,
    incident_id: int,
    *,
    actor: str,
    reason: str,
    escalation: str | None = None,
) -> str:
    """Record that the incident waits for units (queued if it has none at all), and
    with ``escalation`` flag it for operators for that reason (:func:`escalate`); its
    status afterwards."""
    status: str | None = await conn.fetchval(
        _WAIT, incident_id, reason, actor, str(EventType.INCIDENT_QUEUED), notify_channel(schema)
    )
    if status is None:
        raise NotFound("incident", incident_id)
    if escalation is not None:
        await escalate(conn, schema, incident_id, actor=actor, reason=escalation)
    return status


async def escalate(
    conn: asyncpg.Connection, schema: str, incident_id: int, *, actor: str, reason: str
) -> None:
    """Flag the incident for operators' attention, with the reason: once per reason
    (a new reason is news to operators; the same one again is not)."""
    await conn.fetchval(
        _ESCALATE,
        incident_id,
        reason,
        actor,
        str(EventType.INCIDENT_ESCALATED),
        notify_channel(schema),
    )


async def reopen(conn: asyncpg.Connection, incident_id: int, agency: str) -> None:
    """Mark the plan's slot for ``agency`` as needing a unit again."""
    await conn.execute(
        "UPDATE incidents SET unfilled = array_append(unfilled, $2), updated_at = now()"
        " WHERE id = $1 AND NOT ($2 = ANY(unfilled))",
        incident_id,
        agency,
    )


async def reclassify(
    conn: asyncpg.Connection,
    schema: str,
    incident_id: int,
    kind: IncidentType,
    *,
    actor: str,
    reason: str,
) -> None:
    """Give the incident another type (and so priority and response plan).

    The plan's agencies not yet covered by a unit become unfilled; agencies the new
    plan does not list are no longer waited for.
    """
    previous = await conn.fetchrow(
        "SELECT type, priority FROM incidents WHERE id = $1 FOR UPDATE", incident_id
    )
    if previous is None:
        raise NotFound("incident", incident_id)
    await conn.execute(
        "UPDATE incidents SET type = $2, priority = $3, updated_at = now(),"
        " unfilled = ARRAY(SELECT unnest($4::text[]) EXCEPT"
        " SELECT agency FROM assignments WHERE incident_id = $1"
        " AND status IN ('offered', 'accepted', 'completed'))"
        " WHERE id = $1",
        incident_id,
        kind.name,
        kind.priority,
        list(kind.plan),
    )
    await append_event(
        conn,
        schema,
        EventType.INCIDENT_REPRIORITISED,
        actor=actor,
        incident_id=incident_id,
        data={
            "type": kind.name,
            "priority": kind.priority,
            "previous": {"type": previous["type"], "priority": previous["priority"]},
            "reason": reason,
        },
    )


async def refusals(conn: asyncpg.Connection, incident_id: int) -> frozenset[str]:
    """Units not to offer this incident to again: they declined, let the offer
    expire, or an operator took it off them."""
    rows = await conn.fetch(
        "SELECT unit_id FROM assignments WHERE incident_id = $1"
        " AND status IN ('declined', 'expired', 'cancelled')",
        incident_id,
    )
    return frozenset(r["unit_id"] for r in rows)


async def failed_offers(conn: asyncpg.Connection, incident_id: int) -> int:
    """Offers of this incident that units declined or let expire."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM assignments WHERE incident_id = $1"
        " AND status IN ('declined', 'expired')",
        incident_id,
    )
    return count


def unit_status_change(
    unit_id: str,
    old: str,
    new: str,
    actor: str,
    *,
    assignment_id: int | None = None,
    incident_id: int | None = None,
    **extra: Any,
) -> NewEvent:
    """A unit's status change as an event to append with others (``append_events``)."""
    data: dict[str, Any] = {"from": old, "to": new, **extra}
    if assignment_id is not None:
        data["assignment_id"] = assignment_id
    return NewEvent(EventType.UNIT_STATUS_CHANGED, actor, incident_id, unit_id, data)


async def ready_to_close(
    conn: asyncpg.Connection, schema: str, incident_id: int, unit_id: str, status: str, actor: str
) -> None:
    """Tell operators an incident is ready to close when the job a crew just finished
    was its last: every slot had a unit, and none is offered or on its way. The
    incident itself stays open (only an operator closes, with a disposition)."""
    ready = await conn.fetchval(
        f"SELECT {READY_TO_CLOSE_SQL} FROM incidents i WHERE i.id = $1", incident_id
    )
    if not ready:
        return
    await append_event(
        conn,
        schema,
        EventType.INCIDENT_READY_TO_CLOSE,
        actor=actor,
        incident_id=incident_id,
        data={
            "reason": f"every unit has finished (last: {unit_id}, now {status}):"
            " close it with a disposition",
        },
    )

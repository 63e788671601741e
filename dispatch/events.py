"""The event log: every state change is one append-only row, written in the same
transaction as the change. The outbox relay later gives it a position and publishes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg


class EventType(StrEnum):
    """Event types clients can receive (docs/protocol.md)."""

    INCIDENT_CREATED = "incident.created"
    INCIDENT_QUEUED = "incident.queued"
    INCIDENT_ESCALATED = "incident.escalated"
    INCIDENT_DEESCALATED = "incident.deescalated"
    INCIDENT_NOTE_ADDED = "incident.note_added"
    INCIDENT_CLOSED = "incident.closed"
    INCIDENT_MERGED = "incident.merged"
    INCIDENT_REPORT_ATTACHED = "incident.report_attached"
    INCIDENT_REPORT_DETACHED = "incident.report_detached"
    INCIDENT_LOCATION_UPDATED = "incident.location_updated"
    INCIDENT_REPRIORITISED = "incident.reprioritised"
    INCIDENT_CALLBACK_REQUESTED = "incident.callback_requested"
    INCIDENT_CONFIRMED = "incident.confirmed"
    INCIDENT_READY_TO_CLOSE = "incident.ready_to_close"
    ASSIGNMENT_OFFERED = "assignment.offered"
    ASSIGNMENT_ACCEPTED = "assignment.accepted"
    ASSIGNMENT_DECLINED = "assignment.declined"
    ASSIGNMENT_EXPIRED = "assignment.expired"
    ASSIGNMENT_CANCELLED = "assignment.cancelled"
    UNIT_STATUS_CHANGED = "unit.status_changed"
    UNIT_LEFT_HOME_ZONE = "unit.left_home_zone"
    UNIT_RETURNED_HOME_ZONE = "unit.returned_home_zone"
    UNIT_POST_ASSIGNED = "unit.post_assigned"
    # Incidents that travel (docs/exchange.md).
    INCIDENT_HANDOFF_REQUESTED = "incident.handoff_requested"
    INCIDENT_HANDOFF_SENT = "incident.handoff_sent"
    INCIDENT_HANDOFF_ACKNOWLEDGED = "incident.handoff_acknowledged"
    INCIDENT_HANDOFF_REFUSED = "incident.handoff_refused"
    INCIDENT_HANDOFF_ESCALATED = "incident.handoff_escalated"
    INCIDENT_HANDOFF_STATUS = "incident.handoff_status"
    ALERT_ISSUED = "alert.issued"
    # SHOUT volunteers (dispatch/volunteers): an alert's life, and a volunteer's record.
    VOLUNTEER_ALERTED = "volunteer.alerted"
    VOLUNTEER_ACCEPTED = "volunteer.accepted"
    VOLUNTEER_DECLINED = "volunteer.declined"
    VOLUNTEER_EXPIRED = "volunteer.expired"
    VOLUNTEER_STOOD_DOWN = "volunteer.stood_down"
    VOLUNTEER_DONE = "volunteer.done"
    VOLUNTEER_CHANGED = "volunteer.changed"


# Positions are sent as fixed-width decimal strings so that clients which treat them as
# opaque strings still order them correctly.
_POSITION_WIDTH = 16


def format_position(position: int) -> str:
    """The wire form of a stream position."""
    return f"{position:0{_POSITION_WIDTH}d}"


def parse_position(text: str) -> int:
    """Read a position a client sent back; ValueError if it is not one."""
    if not text.isdigit() or len(text) > 19:
        raise ValueError(f"{text!r} is not an event position")
    return int(text)


@dataclass(frozen=True, slots=True)
class Event:
    """A committed event as clients see it."""

    id: int
    position: int
    type: str
    at: datetime
    incident_id: int | None
    unit_id: str | None
    data: dict[str, Any]
    zone_id: str | None = None

    def to_message(self) -> dict[str, Any]:
        """The websocket message carrying this event."""
        return {
            "type": "event",
            "position": format_position(self.position),
            "event": {
                "id": self.id,
                "type": self.type,
                "at": self.at.isoformat(),
                "incident_id": self.incident_id,
                "unit_id": self.unit_id,
                "zone_id": self.zone_id,
                "data": self.data,
            },
        }

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> Event:
        """Build from an ``events`` row that has a position."""
        return cls(
            id=row["id"],
            position=row["position"],
            type=row["type"],
            at=row["at"],
            incident_id=row["incident_id"],
            unit_id=row["unit_id"],
            data=row["data"],
            zone_id=row["zone_id"],
        )


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that wakes the relay of this schema."""
    return f"erss_events_{schema}"


async def append_event(
    conn: asyncpg.Connection,
    schema: str,
    event_type: EventType,
    *,
    actor: str,
    incident_id: int | None = None,
    unit_id: str | None = None,
    data: dict[str, Any] | None = None,
    zone_id: str | None = None,
) -> int:
    """Append one event inside the caller's transaction; returns its id. Its zone (which
    desks see it) is ``zone_id`` if given, else the incident's, else the unit's.

    The NOTIFY is delivered only if the transaction commits, which is when the relay
    should look.
    """
    # The zone is looked up here, at write time, so desks filter on where the incident
    # was when it happened, not where it is now. The NOTIFY rides in the same statement
    # (one round trip per event).
    event_id: int = await conn.fetchval(
        "WITH ins AS (INSERT INTO events (type, actor, incident_id, unit_id, data, zone_id)"
        " VALUES ($1, $2, $3, $4, $5, coalesce($7::text,"
        " (SELECT zone_id FROM incidents WHERE id = $3),"
        " (SELECT zone_id FROM units WHERE id = $4))) RETURNING id)"
        " SELECT id FROM ins, pg_notify($6, '')",
        str(event_type),
        actor,
        incident_id,
        unit_id,
        data or {},
        notify_channel(schema),
        zone_id,
    )
    return event_id


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to append with others in a single statement (``append_events``)."""

    type: EventType
    actor: str
    incident_id: int | None = None
    unit_id: str | None = None
    data: dict[str, Any] | None = None


async def append_events(conn: asyncpg.Connection, schema: str, events: list[NewEvent]) -> None:
    """Append several events, in this order, in one round trip (one NOTIFY): as
    ``append_event`` for each, for the hot paths that write more than one."""
    await conn.execute(
        "WITH ins AS (INSERT INTO events (type, actor, incident_id, unit_id, data, zone_id)"
        " SELECT e.t, e.a, e.i, e.u, e.d, coalesce("
        " (SELECT zone_id FROM incidents WHERE id = e.i),"
        " (SELECT zone_id FROM units WHERE id = e.u))"
        " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::jsonb[])"
        " WITH ORDINALITY AS e(t, a, i, u, d, n) ORDER BY e.n RETURNING id)"
        " SELECT count(*) FROM ins, pg_notify($6, '')",
        [str(e.type) for e in events],
        [e.actor for e in events],
        [e.incident_id for e in events],
        [e.unit_id for e in events],
        [e.data or {} for e in events],
        notify_channel(schema),
    )


EVENT_COLUMNS = "id, position, type, at, incident_id, unit_id, zone_id, data"

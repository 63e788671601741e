"""What clients read: incidents, units, assignments and event replays, as JSON-ready dicts."""

from __future__ import annotations

from typing import Any

import asyncpg

from dispatch.events import EVENT_COLUMNS, Event
from dispatch.vehicles import vehicle_of_incident

OPEN_STATUSES = (
    "new",
    "awaiting_location",
    "callback",
    "queued",
    "offered",
    "dispatched",
    "on_scene",
)
# Open, but waiting for something other than a unit before dispatch can start.
UNLOCATED_STATUSES = frozenset({"awaiting_location", "callback"})


def _location(row: asyncpg.Record) -> dict[str, Any] | None:
    if row["lat"] is None:
        return None
    return {
        "lat": row["lat"],
        "lon": row["lon"],
        "radius_m": row["radius_m"],
        "method": row["location_method"],
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def incident_on_desk_sql(column: str, param: str) -> str:
    """SQL for the desk rule (``dispatch.access.sees_incident_zone``, the console's
    ``DeskScope``): no desk, or a row of no zone, or of one of the desk's zones."""
    return f"({param}::text[] IS NULL OR {column} IS NULL OR {column} = ANY({param}))"


def unit_on_desk_sql(column: str, param: str) -> str:
    """SQL for ``dispatch.access.sees_unit_zone``: no desk, or a unit in one of the
    desk's zones (a unit in no zone is on no desk)."""
    return f"({param}::text[] IS NULL OR coalesce({column} = ANY({param}), false))"


def _zones_param(zones: frozenset[str] | None) -> list[str] | None:
    return sorted(zones) if zones is not None else None


# An open incident whose units have all finished: every slot of its plan had a unit,
# none is offered or on its way now, and at least one did the job. Operators close it.
READY_TO_CLOSE_SQL = (
    "(i.status IN ('dispatched', 'on_scene') AND cardinality(i.unfilled) = 0"
    " AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.incident_id = i.id"
    " AND a.status IN ('offered', 'accepted'))"
    " AND EXISTS (SELECT 1 FROM assignments a WHERE a.incident_id = i.id"
    " AND a.status = 'completed'))"
)

# The caller's flags (repeat blank caller, hoax history) as they were when the incident
# was reported: kept on its incident.created event, shown on the console's queue.
_INCIDENT_SQL = (
    f"SELECT i.*, z.name AS zone_name, {READY_TO_CLOSE_SQL} AS ready_to_close,"
    " (SELECT e.data -> 'caller_history' -> 'flags' FROM events e"
    "  WHERE e.incident_id = i.id AND e.type = 'incident.created' ORDER BY e.id LIMIT 1)"
    " AS caller_flags"
    " FROM incidents i LEFT JOIN zones z ON z.id = i.zone_id"
)


def _incident(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": row["status"],
        "priority": row["priority"],
        "type": row["type"],
        "location": _location(row),
        "zone": {"id": row["zone_id"], "name": row["zone_name"]} if row["zone_id"] else None,
        "other_zones": list(row["other_zones"]),
        "escalated": row["escalated"],
        "escalation_reason": row["escalation_reason"],
        "waiting_reason": row["waiting_reason"],
        "disposition": row["disposition"],
        "merged_into": row["merged_into"],
        "caller_flags": row["caller_flags"] or [],
        "ready_to_close": row["ready_to_close"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _assignment(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "incident_id": row["incident_id"],
        "unit_id": row["unit_id"],
        "agency": row["agency"],
        "status": row["status"],
        "offered_at": _iso(row["offered_at"]),
        "expires_at": _iso(row["expires_at"]),
        "responded_at": _iso(row["responded_at"]),
        "travel_time_s": row["travel_time_s"],
    }


async def open_incidents(
    conn: asyncpg.Connection, *, zones: frozenset[str] | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """Open incidents, most urgent first; of some zones (and those with none) if given."""
    rows = await conn.fetch(
        f"{_INCIDENT_SQL} WHERE i.status = ANY($1::text[])"
        f" AND {incident_on_desk_sql('i.zone_id', '$3')}"
        " ORDER BY i.priority, i.created_at LIMIT $2",
        list(OPEN_STATUSES),
        limit,
        _zones_param(zones),
    )
    return [_incident(r) for r in rows]


async def list_incidents(
    conn: asyncpg.Connection,
    *,
    status: str | None,
    limit: int,
    zones: frozenset[str] | None = None,
) -> list[dict[str, Any]]:
    """Incidents, newest first, optionally of one status; of a desk's zones (and those
    with none) if ``zones`` is given (``dispatch.access``)."""
    rows = await conn.fetch(
        f"{_INCIDENT_SQL} WHERE ($1::text IS NULL OR i.status = $1)"
        f" AND {incident_on_desk_sql('i.zone_id', '$3')}"
        " ORDER BY i.created_at DESC, i.id DESC LIMIT $2",
        status,
        limit,
        _zones_param(zones),
    )
    return [_incident(r) for r in rows]


async def incident_zones(
    conn: asyncpg.Connection, incident_ids: list[int], *, lock: bool = False
) -> dict[int, str | None]:
    """The zone of each of these incidents that exists (None for no zone).

    With ``lock``, the rows are locked in id order (as ``Control.merge`` locks them), so
    the zone an action was allowed on cannot change before the action commits.
    """
    rows = await conn.fetch(
        "SELECT id, zone_id FROM incidents WHERE id = ANY($1::bigint[]) ORDER BY id"
        + (" FOR UPDATE" if lock else ""),
        sorted(set(incident_ids)),
    )
    return {r["id"]: r["zone_id"] for r in rows}


async def incident_zone_of(
    conn: asyncpg.Connection, table: str, row_id: int
) -> tuple[bool, str | None]:
    """Whether an assignment or report exists, and its incident's zone (locked)."""
    if table not in ("assignments", "reports"):
        raise ValueError(f"no incident-owned table {table!r}")
    row = await conn.fetchrow(
        f"SELECT i.zone_id FROM {table} t JOIN incidents i ON i.id = t.incident_id"
        " WHERE t.id = $1 FOR UPDATE OF i",
        row_id,
    )
    return (row is not None, row["zone_id"] if row is not None else None)


async def unit_zone(conn: asyncpg.Connection, unit_id: str) -> tuple[bool, str | None]:
    """Whether a unit exists, and the zone it is in now (locked)."""
    row = await conn.fetchrow("SELECT zone_id FROM units WHERE id = $1 FOR UPDATE", unit_id)
    return (row is not None, row["zone_id"] if row is not None else None)


async def incident_detail(conn: asyncpg.Connection, incident_id: int) -> dict[str, Any] | None:
    """One incident with its reports, assignments and full event history."""
    row = await conn.fetchrow(f"{_INCIDENT_SQL} WHERE i.id = $1", incident_id)
    if row is None:
        return None
    incident = _incident(row)
    reports = await conn.fetch(
        "SELECT * FROM reports WHERE incident_id = $1 ORDER BY id", incident_id
    )
    incident["reports"] = [
        {
            "id": r["id"],
            "channel": r["channel"],
            "gateway_id": r["gateway_id"],
            "external_id": r["external_id"],
            "sender": r["sender"],
            "received_at": _iso(r["received_at"]),
            "location": _location(r),
            "warnings": r["warnings"],
            "payload": r["payload"],
        }
        for r in reports
    ]
    assignments = await conn.fetch(
        "SELECT * FROM assignments WHERE incident_id = $1 ORDER BY id", incident_id
    )
    incident["assignments"] = [_assignment(a) for a in assignments]
    # The bus or cab of a vehicle panic button, as the register knows it.
    incident["vehicle"] = await vehicle_of_incident(conn, incident_id)
    events = await conn.fetch(
        f"SELECT {EVENT_COLUMNS}, actor FROM events WHERE incident_id = $1 ORDER BY id",
        incident_id,
    )
    incident["events"] = [
        {
            "id": e["id"],
            "type": e["type"],
            "at": _iso(e["at"]),
            "actor": e["actor"],
            "unit_id": e["unit_id"],
            "data": e["data"],
        }
        for e in events
    ]
    return incident


def _unit(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "callsign": row["callsign"],
        "agency": row["agency"],
        "status": row["status"],
        "zone_id": row["zone_id"],
        "home_zone_id": row["home_zone_id"],
        "capabilities": list(row["capabilities"]),
        "location": None
        if row["lat"] is None
        else {"lat": row["lat"], "lon": row["lon"], "time": _iso(row["position_at"])},
        "post": None
        if row["post_lat"] is None
        else {"lat": row["post_lat"], "lon": row["post_lon"]},
    }


_UNIT_SQL = (
    "SELECT id, callsign, agency, status, zone_id, home_zone_id, capabilities, lat, lon,"
    " position_at, post_lat, post_lon FROM units"
)


async def list_units(
    conn: asyncpg.Connection, *, zones: frozenset[str] | None = None
) -> list[dict[str, Any]]:
    """Units with status and last known position; those now in some zones if given."""
    rows = await conn.fetch(
        f"{_UNIT_SQL} WHERE {unit_on_desk_sql('zone_id', '$1')} ORDER BY id",
        _zones_param(zones),
    )
    return [_unit(r) for r in rows]


async def units_page(
    conn: asyncpg.Connection, *, zones: frozenset[str] | None, after: str, limit: int
) -> list[dict[str, Any]]:
    """``list_units`` a page at a time: up to ``limit`` units with ids after ``after``."""
    rows = await conn.fetch(
        f"{_UNIT_SQL} WHERE {unit_on_desk_sql('zone_id', '$1')} AND id > $2 ORDER BY id LIMIT $3",
        _zones_param(zones),
        after,
        limit,
    )
    return [_unit(r) for r in rows]


async def unit_view(conn: asyncpg.Connection, unit_id: str) -> dict[str, Any] | None:
    """One unit, or None."""
    row = await conn.fetchrow(f"{_UNIT_SQL} WHERE id = $1", unit_id)
    return _unit(row) if row else None


async def active_assignments(
    conn: asyncpg.Connection,
    *,
    unit_id: str | None = None,
    zones: frozenset[str] | None = None,
) -> list[dict[str, Any]]:
    """Offers pending and assignments accepted, for one unit or all; ``zones``: only
    those of incidents a desk of those zones sees (as its live events are)."""
    rows = await conn.fetch(
        "SELECT a.* FROM assignments a JOIN incidents i ON i.id = a.incident_id"
        " WHERE a.status IN ('offered', 'accepted')"
        " AND ($1::text IS NULL OR a.unit_id = $1)"
        f" AND {incident_on_desk_sql('i.zone_id', '$2')} ORDER BY a.id",
        unit_id,
        _zones_param(zones),
    )
    return [_assignment(r) for r in rows]


async def last_position(conn: asyncpg.Connection) -> int:
    """The newest event position assigned so far (0 before any)."""
    value: int = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
    return value


async def replay(
    conn: asyncpg.Connection,
    *,
    after: int,
    unit_id: str | None,
    limit: int,
    zones: frozenset[str] | None = None,
) -> list[Event]:
    """Events after a position, in position order.

    With ``unit_id``, only what that unit's MDT may see: its own events, and incident
    events (with no unit) of incidents it holds or held an offer or job for (not one it
    declined, let expire or was taken off). With ``zones``, what a desk
    sees: events of those zones and events of no zone.
    """
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1"
        " AND ($2::text IS NULL OR unit_id = $2 OR (unit_id IS NULL AND incident_id IN"
        " (SELECT incident_id FROM assignments WHERE unit_id = $2"
        # As the live scope: an incident the unit declined, let expire or was taken off
        # is no longer its to follow (a desk's notes there are not for this crew).
        "  AND status IN ('offered', 'accepted', 'completed'))))"
        f" AND {incident_on_desk_sql('zone_id', '$4')}"
        " ORDER BY position LIMIT $3",
        after,
        unit_id,
        limit,
        _zones_param(zones),
    )
    return [Event.from_record(r) for r in rows]


async def zones_geojson(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, Any]:
    """The stored zones as a GeoJSON FeatureCollection (RFC 7946)."""
    rows = await conn.fetch("SELECT id, name, geometry FROM zones ORDER BY id")
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": r["id"],
                "properties": {"name": r["name"]},
                "geometry": r["geometry"],
            }
            for r in rows
        ],
    }

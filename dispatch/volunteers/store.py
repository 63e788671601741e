"""Volunteers' records in PostgreSQL: registration, verification, availability,
position, opt-out and deletion. Every change runs in the caller's transaction with its
event (no personal data in events: the id, the flags, nothing else).
"""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg

from dispatch.auth import hash_token, new_secret
from dispatch.errors import InvalidTransition, NotFound
from dispatch.events import EventType, append_event
from dispatch.volunteers.alerts import end_alerts
from geo.points import GeoPoint

_COLUMNS = (
    "id, name, phone, home_area, languages, verified, verified_by, verified_at, available,"
    " opted_out, lat, lon, position_at, registered_by, created_at"
)


def operator_view(row: asyncpg.Record) -> dict[str, Any]:
    """A volunteer's record as operators see it (never the token or its hash)."""
    return {
        "id": row["id"],
        "name": row["name"],
        "phone": row["phone"],
        "home_area": row["home_area"],
        "languages": list(row["languages"]),
        "verified": row["verified"],
        "verified_by": row["verified_by"],
        "verified_at": row["verified_at"],
        "available": row["available"],
        "opted_out": row["opted_out"],
        "position": (
            {"lat": row["lat"], "lon": row["lon"], "at": row["position_at"]}
            if row["lat"] is not None
            else None
        ),
        "registered_by": row["registered_by"],
        "created_at": row["created_at"],
    }


def self_view(row: asyncpg.Record) -> dict[str, Any]:
    """A volunteer's own record, as its socket shows it."""
    view = operator_view(row)
    for hidden in ("verified_by", "registered_by"):
        view.pop(hidden)
    return view


async def _changed(conn: asyncpg.Connection, schema: str, actor: str, row: Any) -> None:
    await append_event(
        conn,
        schema,
        EventType.VOLUNTEER_CHANGED,
        actor=actor,
        data={
            "volunteer_id": row["id"],
            "verified": row["verified"],
            "available": row["available"],
            "opted_out": row["opted_out"],
        },
    )


async def register(
    conn: asyncpg.Connection,
    schema: str,
    *,
    name: str,
    phone: str,
    home_area: str,
    languages: list[str],
    verified: bool,
    actor: str,
    volunteer_id: str | None = None,
    token: str | None = None,
) -> tuple[dict[str, Any], str]:
    """A new volunteer (unavailable until they say otherwise) and their token."""
    volunteer_id = volunteer_id or f"vol-{secrets.token_hex(6)}"
    token = token or new_secret()
    row = await conn.fetchrow(
        "INSERT INTO volunteers (id, name, phone, home_area, languages, verified, verified_by,"
        " verified_at, token_hash, registered_by) VALUES ($1, $2, $3, $4, $5, $6,"
        " CASE WHEN $6 THEN $8 END, CASE WHEN $6 THEN now() END, $7, $8)"
        f" RETURNING {_COLUMNS}",
        volunteer_id,
        name,
        phone,
        home_area,
        languages,
        verified,
        hash_token(token),
        actor,
    )
    await _changed(conn, schema, actor, row)
    return operator_view(row), token


async def find(conn: asyncpg.Connection, volunteer_id: str, *, lock: bool = False) -> Any:
    """The volunteer's row, or None."""
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM volunteers WHERE id = $1{' FOR UPDATE' if lock else ''}",
        volunteer_id,
    )


async def get(conn: asyncpg.Connection, volunteer_id: str, *, lock: bool = False) -> Any:
    """The volunteer's row; NotFound if there is none."""
    row = await find(conn, volunteer_id, lock=lock)
    if row is None:
        raise NotFound("volunteer", volunteer_id)
    return row


async def list_all(
    conn: asyncpg.Connection, *, zones: frozenset[str] | None
) -> list[dict[str, Any]]:
    """Every volunteer (of these home areas, when ``zones``), by id."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM volunteers WHERE $1::text[] IS NULL OR home_area = ANY($1)"
        " ORDER BY id",
        None if zones is None else sorted(zones),
    )
    return [operator_view(r) for r in rows]


async def set_verified(
    conn: asyncpg.Connection, schema: str, volunteer_id: str, verified: bool, *, actor: str
) -> dict[str, Any]:
    """Record the police verification (or withdraw it: pending alerts are stood down)."""
    await get(conn, volunteer_id, lock=True)
    row = await conn.fetchrow(
        "UPDATE volunteers SET verified = $2, verified_by = CASE WHEN $2 THEN $3 END,"
        f" verified_at = CASE WHEN $2 THEN now() END WHERE id = $1 RETURNING {_COLUMNS}",
        volunteer_id,
        verified,
        actor,
    )
    if not verified:
        await end_alerts(
            conn,
            schema,
            volunteer_id=volunteer_id,
            state="stood_down",
            reason="unverified",
            actor=actor,
        )
    await _changed(conn, schema, actor, row)
    return operator_view(row)


async def set_available(
    conn: asyncpg.Connection, schema: str, volunteer_id: str, available: bool, *, actor: str
) -> Any:
    """The volunteer's own availability. Going unavailable declines pending alerts (an
    accepted one stands: they are on their way, and say ``done`` or are stood down)."""
    current = await get(conn, volunteer_id, lock=True)
    if available and current["opted_out"]:
        raise InvalidTransition("volunteer", volunteer_id, "opted_out", "available")
    row = await conn.fetchrow(
        f"UPDATE volunteers SET available = $2 WHERE id = $1 RETURNING {_COLUMNS}",
        volunteer_id,
        available,
    )
    if not available:
        await end_alerts(
            conn,
            schema,
            volunteer_id=volunteer_id,
            state="declined",
            reason="unavailable",
            actor=actor,
            only=("alerted",),
        )
    if current["available"] != available:
        await _changed(conn, schema, actor, row)
    return row


async def record_position(conn: asyncpg.Connection, volunteer_id: str, point: GeoPoint) -> None:
    """The volunteer's newest position (no event: positions are not history)."""
    await conn.execute(
        "UPDATE volunteers SET lat = $2, lon = $3, position_at = now() WHERE id = $1",
        volunteer_id,
        point.lat,
        point.lon,
    )


async def set_opted_out(
    conn: asyncpg.Connection, schema: str, volunteer_id: str, opted_out: bool, *, actor: str
) -> dict[str, Any]:
    """Opt out (no more alerts; every active one stood down) or back in (still
    unavailable until the volunteer says otherwise)."""
    await get(conn, volunteer_id, lock=True)
    row = await conn.fetchrow(
        "UPDATE volunteers SET opted_out = $2, available = false WHERE id = $1"
        f" RETURNING {_COLUMNS}",
        volunteer_id,
        opted_out,
    )
    if opted_out:
        await end_alerts(
            conn,
            schema,
            volunteer_id=volunteer_id,
            state="stood_down",
            reason="opted_out",
            actor=actor,
        )
    await _changed(conn, schema, actor, row)
    return operator_view(row)


async def delete(conn: asyncpg.Connection, schema: str, volunteer_id: str, *, actor: str) -> None:
    """Erase the volunteer: the row (name, phone, area, languages, position, token)
    goes; their alerts stay for the incident's record with no link to them."""
    await get(conn, volunteer_id, lock=True)
    await end_alerts(
        conn,
        schema,
        volunteer_id=volunteer_id,
        state="stood_down",
        reason="deleted",
        actor=actor,
    )
    await conn.execute("DELETE FROM volunteers WHERE id = $1", volunteer_id)
    await append_event(
        conn,
        schema,
        EventType.VOLUNTEER_CHANGED,
        actor=actor,
        data={"volunteer_id": volunteer_id, "deleted": True},
    )

"""Volunteer alerts in PostgreSQL: the conditional claim, answers, stand-downs and
what each side reads. The rules are in ``decide`` and ``views``; this applies them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

from dispatch.errors import InvalidTransition, NotFound
from dispatch.events import EventType, NewEvent, append_events
from dispatch.volunteers.decide import AlertSnap, Pick, answer
from dispatch.volunteers.views import AlertFacts
from geo.points import GeoPoint

_EVENT_OF_STATE = {
    "alerted": EventType.VOLUNTEER_ALERTED,
    "accepted": EventType.VOLUNTEER_ACCEPTED,
    "declined": EventType.VOLUNTEER_DECLINED,
    "expired": EventType.VOLUNTEER_EXPIRED,
    "stood_down": EventType.VOLUNTEER_STOOD_DOWN,
    "done": EventType.VOLUNTEER_DONE,
}
_ALERT_COLUMNS = (
    "id, incident_id, volunteer_id, state, distance_m, alerted_at, expires_at, answered_at,"
    " ended_at, end_reason"
)


def alert_event(row: Any, actor: str) -> NewEvent:
    """The event of an alert's new state: ids and distance, never personal data."""
    return NewEvent(
        _EVENT_OF_STATE[row["state"]],
        actor,
        incident_id=row["incident_id"],
        data={
            "alert_id": row["id"],
            "volunteer_id": row["volunteer_id"],
            "state": row["state"],
            "distance_m": round(row["distance_m"]),
            "reason": row["end_reason"],
        },
    )


async def publish(conn: asyncpg.Connection, schema: str, rows: list[Any], actor: str) -> None:
    """One event per changed alert, in one round trip."""
    if rows:
        await append_events(conn, schema, [alert_event(r, actor) for r in rows])


async def claim(
    conn: asyncpg.Connection, schema: str, incident_id: int, pick: Pick, *, ttl_s: float
) -> int | None:
    """Alert ``pick`` to the incident unless the volunteer was claimed meanwhile (by
    another incident, on any instance), went unavailable, or was asked before: the
    partial unique indexes make the insert do nothing then. Returns the alert's id."""
    row = await conn.fetchrow(
        "INSERT INTO volunteer_alerts (incident_id, volunteer_id, state, distance_m, expires_at)"
        " SELECT $1, v.id, 'alerted', $3, now() + make_interval(secs => $4) FROM volunteers v"
        " WHERE v.id = $2 AND v.available AND v.verified AND NOT v.opted_out"
        f" ON CONFLICT DO NOTHING RETURNING {_ALERT_COLUMNS}",
        incident_id,
        pick.volunteer_id,
        pick.distance_m,
        ttl_s,
    )
    if row is None:
        return None
    await publish(conn, schema, [row], "system:volunteers")
    alert_id: int = row["id"]
    return alert_id


async def end_alerts(
    conn: asyncpg.Connection,
    schema: str,
    *,
    state: str,
    reason: str,
    actor: str,
    ids: Collection[int] | None = None,
    volunteer_id: str | None = None,
    incident_id: int | None = None,
    only: tuple[str, ...] = ("alerted", "accepted"),
) -> list[Any]:
    """End the matching alerts still in one of ``only`` (by id, volunteer or incident:
    the conditions are ANDed); returns the rows changed, each with its event."""
    rows = await conn.fetch(
        "UPDATE volunteer_alerts SET state = $1, end_reason = $2, ended_at = now()"
        " WHERE state = ANY($3::text[]) AND ($4::bigint[] IS NULL OR id = ANY($4::bigint[]))"
        " AND ($5::text IS NULL OR volunteer_id = $5) AND ($6::bigint IS NULL OR incident_id = $6)"
        f" RETURNING {_ALERT_COLUMNS}",
        state,
        reason,
        list(only),
        None if ids is None else list(ids),
        volunteer_id,
        incident_id,
    )
    await publish(conn, schema, list(rows), actor)
    return list(rows)


def _snap(row: Any) -> AlertSnap:
    return AlertSnap(
        row["id"], row["incident_id"], row["volunteer_id"], row["state"], row["expires_at"]
    )


async def respond(
    conn: asyncpg.Connection, schema: str, volunteer_id: str, alert_id: int, wanted: str
) -> int:
    """A volunteer's answer: accepted, declined or done. Returns the alert id."""
    row = await conn.fetchrow(
        f"SELECT a.{_ALERT_COLUMNS.replace(', ', ', a.')}, i.status AS incident_status,"
        " now() AS now FROM volunteer_alerts a JOIN incidents i ON i.id = a.incident_id"
        " WHERE a.id = $1 FOR UPDATE OF a",
        alert_id,
    )
    answer(
        _snap(row) if row is not None else None,
        alert_id,
        volunteer_id,
        wanted=wanted,
        incident_status=row["incident_status"] if row is not None else "",
        now=row["now"] if row is not None else datetime.min.replace(tzinfo=UTC),
    )
    updated = await conn.fetchrow(
        "UPDATE volunteer_alerts SET state = $2, answered_at = CASE WHEN $2 = 'done'"
        " THEN answered_at ELSE now() END, ended_at = CASE WHEN $2 = 'accepted' THEN NULL"
        f" ELSE now() END WHERE id = $1 RETURNING {_ALERT_COLUMNS}",
        alert_id,
        wanted,
    )
    await publish(conn, schema, [updated], f"volunteer:{volunteer_id}")
    return alert_id


async def stand_down(
    conn: asyncpg.Connection,
    schema: str,
    incident_id: int,
    volunteer_id: str,
    *,
    actor: str,
    reason: str,
) -> dict[str, Any]:
    """An operator stands a volunteer down from an incident; returns the alert."""
    ended = await end_alerts(
        conn,
        schema,
        state="stood_down",
        reason=reason,
        actor=actor,
        volunteer_id=volunteer_id,
        incident_id=incident_id,
    )
    if ended:
        return dict(ended[0])
    last = await conn.fetchrow(
        "SELECT state FROM volunteer_alerts WHERE incident_id = $1 AND volunteer_id = $2",
        incident_id,
        volunteer_id,
    )
    if last is None:
        raise NotFound("volunteer alert", f"of {volunteer_id} for incident {incident_id}")
    raise InvalidTransition("the alert of volunteer", volunteer_id, last["state"], "stood_down")


async def incident_alerts(conn: asyncpg.Connection, incident_id: int) -> list[dict[str, Any]]:
    """Who was alerted to the incident, with their state, distance and (while active)
    where they are now: the operator's list."""
    rows = await conn.fetch(
        "SELECT a.id, a.volunteer_id, a.state, a.distance_m, a.alerted_at, a.expires_at,"
        " a.answered_at, a.ended_at, a.end_reason, v.name, v.phone, v.languages,"
        " v.lat, v.lon, v.position_at FROM volunteer_alerts a"
        " LEFT JOIN volunteers v ON v.id = a.volunteer_id WHERE a.incident_id = $1"
        " ORDER BY a.id",
        incident_id,
    )
    return [
        {
            "alert_id": r["id"],
            "volunteer_id": r["volunteer_id"],
            "name": r["name"],
            "phone": r["phone"],
            "languages": list(r["languages"]) if r["languages"] is not None else None,
            "state": r["state"],
            "distance_m": round(r["distance_m"]),
            "alerted_at": r["alerted_at"],
            "expires_at": r["expires_at"],
            "answered_at": r["answered_at"],
            "ended_at": r["ended_at"],
            "reason": r["end_reason"],
            "position": (
                {"lat": r["lat"], "lon": r["lon"], "at": r["position_at"]}
                if r["lat"] is not None and r["state"] in ("alerted", "accepted")
                else None
            ),
        }
        for r in rows
    ]


async def alert_facts(
    conn: asyncpg.Connection,
    volunteer_id: str,
    labels: Mapping[str, str],
    *,
    alert_id: int | None = None,
) -> list[AlertFacts]:
    """The facts of the volunteer's alerts: one (``alert_id``, whatever its state) or
    every active one. Only ever this volunteer's own."""
    rows = await conn.fetch(
        "SELECT a.id, a.incident_id, a.state, a.distance_m, a.alerted_at, a.expires_at,"
        " a.end_reason,"
        " i.type, i.lat, i.lon, i.radius_m, c.consent FROM volunteer_alerts a"
        " JOIN incidents i ON i.id = a.incident_id"
        " LEFT JOIN volunteer_consent c ON c.incident_id = a.incident_id"
        " WHERE a.volunteer_id = $1 AND (CASE WHEN $2::bigint IS NULL"
        " THEN a.state IN ('alerted', 'accepted') ELSE a.id = $2 END) ORDER BY a.id",
        volunteer_id,
        alert_id,
    )
    return [
        AlertFacts(
            alert_id=r["id"],
            incident_id=r["incident_id"],
            state=r["state"],
            incident_type=r["type"],
            incident_label=labels.get(r["type"], r["type"]),
            incident_point=(GeoPoint(lat=r["lat"], lon=r["lon"]) if r["lat"] is not None else None),
            incident_radius_m=r["radius_m"],
            consent=r["consent"],
            distance_m=r["distance_m"],
            alerted_at=r["alerted_at"],
            expires_at=r["expires_at"],
            end_reason=r["end_reason"],
        )
        for r in rows
    ]


async def set_consent(
    conn: asyncpg.Connection, schema: str, incident_id: int, consent: str, *, actor: str
) -> None:
    """Record whether the caller agreed to volunteers; refused stands them all down."""
    await conn.execute(
        "INSERT INTO volunteer_consent (incident_id, consent, set_by) VALUES ($1, $2, $3)"
        " ON CONFLICT (incident_id) DO UPDATE SET consent = excluded.consent,"
        " set_by = excluded.set_by, set_at = now()",
        incident_id,
        consent,
        actor,
    )
    if consent == "refused":
        await end_alerts(
            conn,
            schema,
            state="stood_down",
            reason="consent_refused",
            actor=actor,
            incident_id=incident_id,
        )

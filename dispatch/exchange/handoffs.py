"""Hand-off rows: an operator hands an incident over, the other CAD answers, and what
the console reads. Each change commits with its event (``dispatch.events``), so the
console sees every step through the ordinary event path."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from dispatch.errors import InvalidTransition, NotFound
from dispatch.events import EventType, append_event
from dispatch.exchange.agencies import Agency
from dispatch.exchange.eido import Origin, build_eido
from dispatch.exchange.handoff import (
    EIDO_PATH,
    REMOTE_STATUSES,
    STATUS_EVENTS,
    STATUS_PATH,
    status_body,
    status_update_for,
)
from dispatch.exchange.snapshot import incident_and_units

_CLOSED = ("closed", "merged")


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


async def enqueue(
    conn: asyncpg.Connection,
    *,
    agency_id: str,
    path: str,
    body: bytes,
    key: str,
    incident_id: int | None,
    handoff_id: int | None = None,
) -> bool:
    """Put one signed POST in the exchange outbox (once per ``key``); True if new."""
    inserted = await conn.fetchval(
        "INSERT INTO exchange_outbox (agency_id, path, body, idempotency_key, handoff_id,"
        " incident_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key)"
        " DO NOTHING RETURNING true",
        agency_id,
        path,
        body,
        key,
        handoff_id,
        incident_id,
    )
    return bool(inserted)


async def hand_over(
    conn: asyncpg.Connection,
    schema: str,
    *,
    incident_id: int,
    agency: Agency,
    origin: Origin,
    actor: str,
    reason: str,
) -> dict[str, Any]:
    """Hand the incident to ``agency``: its EIDO as it is now goes into the outbox.
    The caller holds the incident's row lock (the desk check)."""
    found = await incident_and_units(conn, incident_id)
    if found is None:
        raise NotFound("incident", incident_id)
    incident, units = found
    if incident["status"] in _CLOSED:
        raise InvalidTransition("incident", incident_id, incident["status"], "handed over")
    live = await conn.fetchval(
        "SELECT state FROM handoffs WHERE incident_id = $1 AND agency_id = $2"
        " AND state IN ('pending', 'acknowledged')",
        incident_id,
        agency.id,
    )
    if live is not None:
        raise InvalidTransition(
            "incident", incident_id, f"already handed to {agency.id}", "handed to it again"
        )
    eido = build_eido(incident, units=units, origin=origin, now=datetime.now(UTC))
    handoff_id: int = await conn.fetchval(
        "INSERT INTO handoffs (incident_id, agency_id, state, actor, reason)"
        " VALUES ($1, $2, 'pending', $3, $4) RETURNING id",
        incident_id,
        agency.id,
        actor,
        reason,
    )
    await enqueue(
        conn,
        agency_id=agency.id,
        path=EIDO_PATH,
        body=_json_bytes(eido),
        key=f"eido-{uuid.uuid4().hex}",
        incident_id=incident_id,
        handoff_id=handoff_id,
    )
    await append_event(
        conn,
        schema,
        EventType.INCIDENT_HANDOFF_REQUESTED,
        actor=actor,
        incident_id=incident_id,
        data={"handoff_id": handoff_id, "agency": agency.id, "reason": reason},
    )
    return await handoff_view(conn, handoff_id)


_HANDOFF_SQL = (
    "SELECT h.id, h.incident_id, h.agency_id, h.state, h.remote_status, h.remote_detail,"
    " h.reason, h.created_at, h.updated_at, o.attempts, o.last_error, o.next_attempt_at,"
    " o.delivered_at FROM handoffs h"
    " LEFT JOIN exchange_outbox o ON o.handoff_id = h.id AND o.path = '" + EIDO_PATH + "'"
)


def _handoff(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "incident_id": row["incident_id"],
        "agency": row["agency_id"],
        "state": row["state"],
        "remote_status": row["remote_status"],
        "remote_detail": row["remote_detail"],
        "reason": row["reason"],
        "attempts": row["attempts"] or 0,
        "last_error": row["last_error"],
        "next_attempt_at": row["next_attempt_at"].isoformat()
        if row["state"] == "pending" and row["next_attempt_at"]
        else None,
        "acknowledged_at": row["delivered_at"].isoformat() if row["delivered_at"] else None,
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def handoff_view(conn: asyncpg.Connection, handoff_id: int) -> dict[str, Any]:
    """One hand-off as operators see it."""
    row = await conn.fetchrow(f"{_HANDOFF_SQL} WHERE h.id = $1", handoff_id)
    if row is None:  # pragma: no cover - read right after its insert
        raise NotFound("handoff", handoff_id)
    return _handoff(row)


async def handoffs_of(conn: asyncpg.Connection, incident_id: int) -> list[dict[str, Any]]:
    """An incident's hand-offs, oldest first."""
    rows = await conn.fetch(f"{_HANDOFF_SQL} WHERE h.incident_id = $1 ORDER BY h.id", incident_id)
    return [_handoff(r) for r in rows]


def body_sha256(body: bytes) -> str:
    """Fingerprint of a delivery's body, to tell a retry from another request."""
    return hashlib.sha256(body).hexdigest()


async def apply_remote_status(
    conn: asyncpg.Connection,
    schema: str,
    *,
    agency_id: str,
    incident_id: int,
    status: str,
    detail: dict[str, Any],
) -> dict[str, Any]:
    """Record what the other CAD says it did with our incident (an event consoles see).
    NotFound unless the incident is handed to that agency."""
    handoff_id = await conn.fetchval(
        "SELECT id FROM handoffs WHERE incident_id = $1 AND agency_id = $2"
        " AND state IN ('pending', 'acknowledged') ORDER BY id DESC LIMIT 1 FOR UPDATE",
        incident_id,
        agency_id,
    )
    if handoff_id is None:
        raise NotFound("hand-off of incident", incident_id)
    # A status update proves the EIDO arrived, whatever became of its acknowledgement.
    # Updates retried out of order never move the shown status back (on scene, then a
    # late "accepted").
    await conn.execute(
        "UPDATE handoffs SET state = 'acknowledged', updated_at = now(),"
        " remote_status = CASE WHEN array_position($4::text[], remote_status) > "
        " array_position($4::text[], $2) THEN remote_status ELSE $2 END,"
        " remote_detail = CASE WHEN array_position($4::text[], remote_status) >"
        " array_position($4::text[], $2) THEN remote_detail ELSE $3 END WHERE id = $1",
        handoff_id,
        status,
        detail,
        list(REMOTE_STATUSES),
    )
    await append_event(
        conn,
        schema,
        EventType.INCIDENT_HANDOFF_STATUS,
        actor=f"agency:{agency_id}",
        incident_id=incident_id,
        data={"handoff_id": handoff_id, "agency": agency_id, "status": status, **detail},
    )
    return {"handoff_id": handoff_id, "incident_id": incident_id, "status": status}


async def report_back(conn: asyncpg.Connection, *, batch: int = 200) -> int:
    """Queue status updates for the CADs that handed us incidents, from our events since
    the last ones reported (by position: the order events became visible). Returns how
    many were queued."""
    rows = await conn.fetch(
        "SELECT e.position, e.id, e.type, e.unit_id, e.data, e.at, x.agency_id,"
        " x.tracking_id, x.incident_id FROM exchange_inbound x JOIN events e"
        " ON e.incident_id = x.incident_id AND e.position > x.reported_to"
        " WHERE e.type = ANY($1::text[]) ORDER BY e.position LIMIT $2",
        list(STATUS_EVENTS),
        batch,
    )
    queued = 0
    for row in rows:
        update = status_update_for(row["type"], row["data"] or {})
        if update is not None:
            status, detail = update
            body = status_body(
                incident=row["tracking_id"],
                status=status,
                at=row["at"].isoformat(),
                unit=row["unit_id"] if status in ("unit_assigned", "on_scene") else None,
                detail=detail,
            )
            queued += await enqueue(
                conn,
                agency_id=row["agency_id"],
                path=STATUS_PATH,
                body=_json_bytes(body),
                key=f"status-{row['agency_id']}-{row['id']}",
                incident_id=row["incident_id"],
            )
        await conn.execute(
            "UPDATE exchange_inbound SET reported_to = greatest(reported_to, $3)"
            " WHERE agency_id = $1 AND tracking_id = $2",
            row["agency_id"],
            row["tracking_id"],
            row["position"],
        )
    return queued


async def record_inbound(
    conn: asyncpg.Connection,
    *,
    agency_id: str,
    tracking_id: str,
    incident_id: int,
) -> None:
    """Remember that this incident came from ``agency_id`` (once), and tell it at once
    that we accepted it; later changes follow through ``report_back``."""
    first = await conn.fetchval(
        "INSERT INTO exchange_inbound (incident_id, agency_id, tracking_id, reported_to)"
        " VALUES ($1, $2, $3, (SELECT coalesce(max(position), 0) FROM events))"
        " ON CONFLICT (agency_id, tracking_id) DO NOTHING RETURNING true",
        incident_id,
        agency_id,
        tracking_id,
    )
    if first:
        body = status_body(
            incident=tracking_id,
            status="accepted",
            at=datetime.now(UTC).isoformat(),
            unit=None,
            detail={},
        )
        await enqueue(
            conn,
            agency_id=agency_id,
            path=STATUS_PATH,
            body=_json_bytes(body),
            key=f"accepted-{agency_id}-{body_sha256(tracking_id.encode())[:32]}",
            incident_id=incident_id,
        )

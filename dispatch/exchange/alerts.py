"""Issuing CAP alerts: the rows, the chain of Update and Cancel, the current set.

An alert is never edited. An Update or Cancel is a new alert that references the one it
replaces; the replaced one is marked superseded and leaves the feed. A Cancel stays in
the feed until the cancelled alert would have expired, so receivers polling the feed
learn of it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from dispatch.errors import InvalidTransition, NotFound
from dispatch.events import EventType, append_event
from dispatch.exchange.cap import AlertSpec, Reference, build_alert
from dispatch.exchange.eido import Origin


@dataclass(frozen=True, slots=True)
class Issued:
    """An alert as stored."""

    identifier: str
    msg_type: str
    headline: str
    sent: datetime
    expires: datetime
    incident_id: int | None
    references: str | None

    def to_json(self) -> dict[str, Any]:
        """The operator's answer (the CAP itself is at its own URL)."""
        return {
            "identifier": self.identifier,
            "msg_type": self.msg_type,
            "headline": self.headline,
            "sent": self.sent.isoformat(),
            "expires": self.expires.isoformat(),
            "incident_id": self.incident_id,
            "references": self.references,
        }


_COLUMNS = "a.identifier, a.msg_type, a.headline, a.sent_at, a.expires_at, a.incident_id"


def _issued(row: asyncpg.Record, references: str | None = None) -> Issued:
    return Issued(
        row["identifier"],
        row["msg_type"],
        row["headline"],
        row["sent_at"],
        row["expires_at"],
        row["incident_id"],
        references,
    )


def new_identifier(origin: Origin) -> str:
    """A CAP identifier: unique, and free of spaces, commas, '<' and '&'."""
    return f"{origin.agency_id}.alert.{uuid.uuid4().hex}"


async def issue(
    conn: asyncpg.Connection,
    schema: str,
    *,
    origin: Origin,
    spec: AlertSpec,
    sent: datetime,
    expires: datetime,
    incident_id: int | None,
    actor: str,
    replaces: str | None = None,
) -> tuple[Issued, str]:
    """Store a new Alert, or an Update of ``replaces``; returns it and its XML."""
    earlier = await _replaceable(conn, replaces) if replaces is not None else None
    references = await _chain(conn, earlier["id"], origin) if earlier is not None else []
    if earlier is not None and incident_id is None:
        incident_id = earlier["incident_id"]
    msg_type = "Update" if earlier is not None else "Alert"
    return await _store(
        conn,
        schema,
        origin=origin,
        msg_type=msg_type,
        spec=spec,
        sent=sent,
        expires=expires,
        incident_id=incident_id,
        earlier=earlier,
        references=references,
        actor=actor,
    )


async def cancel(
    conn: asyncpg.Connection,
    schema: str,
    *,
    origin: Origin,
    identifier: str,
    note: str,
    sent: datetime,
    actor: str,
) -> tuple[Issued, str]:
    """Store the Cancel of an alert; it is current until the alert would have expired."""
    earlier = await _replaceable(conn, identifier)
    references = await _chain(conn, earlier["id"], origin)
    expires = max(earlier["expires_at"], sent + timedelta(minutes=1))
    return await _store(
        conn,
        schema,
        origin=origin,
        msg_type="Cancel",
        spec=None,
        sent=sent,
        expires=expires,
        incident_id=earlier["incident_id"],
        earlier=earlier,
        references=references,
        actor=actor,
        note=note,
        headline=earlier["headline"],
    )


async def _replaceable(conn: asyncpg.Connection, identifier: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT id, identifier, msg_type, headline, sent_at, expires_at, incident_id,"
        " superseded FROM alerts WHERE identifier = $1 FOR UPDATE",
        identifier,
    )
    if row is None:
        raise NotFound("alert", identifier)
    if row["superseded"]:
        raise InvalidTransition("alert", identifier, "superseded", "updated or cancelled")
    if row["msg_type"] == "Cancel":
        raise InvalidTransition("alert", identifier, "a cancel", "updated or cancelled")
    return row


async def _chain(conn: asyncpg.Connection, alert_id: int, origin: Origin) -> list[Reference]:
    """The alert and every one it replaced, oldest first: what a new one references."""
    rows = await conn.fetch(
        "WITH RECURSIVE chain AS (SELECT id, identifier, sent_at, references_id FROM alerts"
        " WHERE id = $1 UNION ALL SELECT a.id, a.identifier, a.sent_at, a.references_id"
        " FROM alerts a JOIN chain c ON a.id = c.references_id)"
        " SELECT identifier, sent_at FROM chain ORDER BY sent_at, id",
        alert_id,
    )
    return [Reference(origin.agency_id, r["identifier"], r["sent_at"]) for r in rows]


async def _store(
    conn: asyncpg.Connection,
    schema: str,
    *,
    origin: Origin,
    msg_type: str,
    spec: AlertSpec | None,
    sent: datetime,
    expires: datetime,
    incident_id: int | None,
    earlier: asyncpg.Record | None,
    references: list[Reference],
    actor: str,
    note: str = "",
    headline: str = "",
) -> tuple[Issued, str]:
    identifier = new_identifier(origin)
    xml = build_alert(
        identifier=identifier,
        sender=origin.agency_id,
        sender_name=origin.name,
        sent=sent,
        expires=expires,
        msg_type=msg_type,
        spec=spec,
        references=references,
        note=note,
    )
    headline = spec.headline if spec is not None else headline
    # CAP times are whole seconds: the stored times are the ones the XML says.
    sent = sent.replace(microsecond=0)
    expires = expires.replace(microsecond=0)
    row = await conn.fetchrow(
        "INSERT INTO alerts (identifier, msg_type, incident_id, references_id, headline,"
        " sent_at, expires_at, xml, actor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        f" RETURNING id, {_COLUMNS.replace('a.', '')}",
        identifier,
        msg_type,
        incident_id,
        earlier["id"] if earlier is not None else None,
        headline,
        sent,
        expires,
        xml,
        actor,
    )
    if earlier is not None:
        await conn.execute("UPDATE alerts SET superseded = true WHERE id = $1", earlier["id"])
    await append_event(
        conn,
        schema,
        EventType.ALERT_ISSUED,
        actor=actor,
        incident_id=incident_id,
        data={
            "identifier": identifier,
            "msg_type": msg_type,
            "headline": headline,
            "expires": expires.isoformat(),
            "references": earlier["identifier"] if earlier is not None else None,
        },
    )
    return _issued(row, earlier["identifier"] if earlier is not None else None), xml


async def current(conn: asyncpg.Connection | asyncpg.Pool, now: datetime) -> list[Issued]:
    """Alerts in force (neither replaced nor expired), newest first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS}, r.identifier AS ref FROM alerts a"
        " LEFT JOIN alerts r ON r.id = a.references_id"
        " WHERE NOT a.superseded AND a.expires_at > $1 ORDER BY a.sent_at DESC, a.id DESC",
        now,
    )
    return [_issued(r, r["ref"]) for r in rows]


async def xml_of(conn: asyncpg.Connection | asyncpg.Pool, identifier: str) -> str | None:
    """The CAP XML of one alert as issued (current or not), or None."""
    xml: str | None = await conn.fetchval(
        "SELECT xml FROM alerts WHERE identifier = $1", identifier
    )
    return xml

"""The rows an incident and its reports are written as, and how they read back.

Shared by intake (a report becomes or joins an incident) and the operator actions that
go through intake (place, confirm, split): SQL and the JSON shapes of the events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from dispatch import idempotency
from dispatch.incident_types import IncidentType
from dispatch.metrics import Metrics
from dispatch.reports import IncidentReport, IntakeResult
from geo.location import Location
from geo.points import GeoPoint
from geo.zones import Zone


async def reserve_delivery(
    conn: asyncpg.Connection,
    report: IncidentReport,
    key: str,
    body_sha256: str,
    *,
    lock_senders_of: str | None = None,
) -> IntakeResult | None:
    """The answer an earlier delivery of this report got (same key, or the same delivery
    under another key), or None when this one is the first and now holds both; then,
    with ``lock_senders_of`` (the schema), also its senders' locks (``lock_senders``)."""
    earlier = await idempotency.reserve(
        conn,
        gateway_id=report.gateway_id,
        key=key,
        body_sha256=body_sha256,
        delivery_id=report.delivery_id,
        then_lock=(
            _sender_locks(lock_senders_of, report.sender_keys)
            if lock_senders_of is not None
            else ()
        ),
    )
    return IntakeResult.from_json(earlier) if earlier is not None else None


def _sender_locks(schema: str, keys: Iterable[str]) -> list[str]:
    # In key order, so two reports sharing keys cannot deadlock.
    return [f"{schema}:{key}" for key in sorted(set(keys))]


async def lock_senders(conn: asyncpg.Connection, schema: str, keys: Iterable[str]) -> None:
    """Take the senders' reports one at a time (a panic button places five calls and
    sends an SMS at once: one incident), until the transaction ends."""
    for name in _sender_locks(schema, keys):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)


async def finish_delivery(
    conn: asyncpg.Connection,
    report: IncidentReport,
    key: str,
    result: IntakeResult,
    metrics: Metrics | None,
    *,
    new: bool,
) -> None:
    """Count the report (a new incident, or one attached) and keep its answer for a
    replay of the delivery, in the report's transaction."""
    if metrics is not None:
        metrics.reports.labels(report.channel, "new" if new else "attached").inc()
        if new:
            metrics.incidents.labels(report.channel, result.status).inc()
    await idempotency.complete(
        conn, gateway_id=report.gateway_id, key=key, response=result.to_json()
    )


async def insert_incident(
    conn: asyncpg.Connection,
    status: str,
    kind: IncidentType,
    location: Location | None,
    zone: Zone | None,
    other_zones: list[str],
) -> int:
    incident_id: int = await conn.fetchval(
        "INSERT INTO incidents (status, priority, type, lat, lon, radius_m,"
        " location_method, zone_id, location_time, unfilled, other_zones)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        status,
        kind.priority,
        kind.name,
        *location_columns(location),
        zone.id if zone else None,
        fix_time(location) if location else None,
        list(kind.plan),
        other_zones,
    )
    return incident_id


def created_data(
    status: str,
    kind: IncidentType,
    channel: str,
    report_id: int,
    location: Location | None,
    zone: Zone | None,
    other_zones: list[str],
    warnings: list[str],
    **extra: Any,
) -> dict[str, Any]:
    """The data of an incident.created event (docs/protocol.md)."""
    return {
        "status": status,
        "priority": kind.priority,
        "type": kind.name,
        "channel": channel,
        "report_id": report_id,
        "location": location_json(location),
        "zone": {"id": zone.id, "name": zone.name} if zone else None,
        "other_zones": other_zones,
        "warnings": warnings,
        **extra,
    }


def row_location(row: asyncpg.Record) -> Location | None:
    """The location stored in a row's lat/lon/radius_m/location_method/location_time."""
    if row["lat"] is None:
        return None
    return Location(
        point=GeoPoint(lat=row["lat"], lon=row["lon"]),
        radius_m=row["radius_m"],
        method=row["location_method"] or "unknown",
        time=row["location_time"],
    )


def location_columns(
    location: Location | None,
) -> tuple[float | None, float | None, float | None, str | None]:
    if location is None:
        return (None, None, None, None)
    return (location.point.lat, location.point.lon, location.radius_m, location.method)


def fix_time(location: Location) -> datetime:
    # A fix without its own time is as old as its arrival. One without a UTC offset
    # cannot be compared with one that has it; gateways' schemas refuse such times, and
    # a parser that let one through is read as UTC rather than fail the report.
    if location.time is None:
        return datetime.now(UTC)
    if location.time.tzinfo is None:
        return location.time.replace(tzinfo=UTC)
    return location.time


def aware(time: datetime | None) -> datetime | None:
    return time.replace(tzinfo=UTC) if time is not None and time.tzinfo is None else time


def location_json(location: Location | None) -> dict[str, Any] | None:
    """A location as the API shows it: never a made-up 0,0, null while unknown."""
    if location is None:
        return None
    return {
        "lat": location.point.lat,
        "lon": location.point.lon,
        "radius_m": location.radius_m,
        "method": location.method,
    }


_REPORT_COLUMNS = (
    "channel, gateway_id, external_id, sender, lat, lon, radius_m, location_method,"
    " location_time, payload, warnings, silent, raw, raw_content_type, intake_error"
)


def _report_values(report: IncidentReport, intake_error: str | None) -> list[Any]:
    location = report.location
    return [
        report.channel,
        report.gateway_id,
        report.external_id,
        report.sender,
        *location_columns(location),
        location.time if location else None,
        report.payload,
        list(report.warnings),
        report.silent,
        report.raw,
        report.raw_content_type,
        intake_error,
        sorted(set(report.sender_keys)),
    ]


# The report ($2-$16) and its sender keys ($17) of the incident in ``i``: one statement.
# A key already taken by this report is skipped.
_REPORT_AND_KEYS = (
    f"r AS (INSERT INTO reports (incident_id, {_REPORT_COLUMNS})"
    " SELECT id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 FROM i"
    " RETURNING id, incident_id),"
    " k AS (INSERT INTO report_keys (key, report_id)"
    " SELECT key, r.id FROM r, unnest($17::text[]) AS key ON CONFLICT DO NOTHING)"
    " SELECT r.incident_id, r.id FROM r"
)


async def insert_report(
    conn: asyncpg.Connection,
    incident_id: int,
    report: IncidentReport,
    *,
    intake_error: str | None = None,
) -> int:
    """Insert a report of an incident, with its sender keys, in one statement; its id."""
    row = await conn.fetchrow(
        f"WITH i AS (SELECT $1::bigint AS id), {_REPORT_AND_KEYS}",
        incident_id,
        *_report_values(report, intake_error),
    )
    report_id: int = row["id"]
    return report_id


async def insert_incident_with_report(
    conn: asyncpg.Connection,
    status: str,
    kind: IncidentType,
    location: Location | None,
    zone: Zone | None,
    other_zones: list[str],
    report: IncidentReport,
    *,
    intake_error: str | None = None,
) -> tuple[int, int]:
    """A new incident and its first report (with its sender keys), in one statement;
    their ids."""
    row = await conn.fetchrow(
        "WITH i AS (INSERT INTO incidents (status, priority, type, lat, lon, radius_m,"
        " location_method, zone_id, location_time, unfilled, other_zones)"
        " VALUES ($1, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27) RETURNING id),"
        f" {_REPORT_AND_KEYS}",
        status,
        *_report_values(report, intake_error),
        kind.priority,
        kind.name,
        *location_columns(location),
        zone.id if zone else None,
        fix_time(location) if location else None,
        list(kind.plan),
        other_zones,
    )
    return row["incident_id"], row["id"]

"""The rows an incident and its reports are written as, and how they read back.

Shared by intake (a report becomes or joins an incident) and the operator actions that
go through intake (place, confirm, split): SQL and the JSON shapes of the events.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from dispatch import idempotency
from dispatch.incident_types import IncidentType
from dispatch.reports import IncidentReport, IntakeResult
from geo.location import Location
from geo.points import GeoPoint
from geo.zones import Zone


async def reserve_delivery(
    conn: asyncpg.Connection, report: IncidentReport, key: str, body_sha256: str
) -> IntakeResult | None:
    """The answer an earlier delivery of this report got (same key, or the same delivery
    under another key), or None when this one is the first and now holds both."""
    earlier = await idempotency.reserve(
        conn,
        gateway_id=report.gateway_id,
        key=key,
        body_sha256=body_sha256,
        delivery_id=report.delivery_id,
    )
    return IntakeResult.from_json(earlier) if earlier is not None else None


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


async def insert_report(
    conn: asyncpg.Connection,
    incident_id: int,
    report: IncidentReport,
    *,
    intake_error: str | None = None,
) -> int:
    """Insert a report of an incident, with its sender keys; its id."""
    location = report.location
    report_id: int = await conn.fetchval(
        "INSERT INTO reports (incident_id, channel, gateway_id, external_id, sender, lat, lon,"
        " radius_m, location_method, location_time, payload, warnings, silent, raw,"
        " raw_content_type, intake_error)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        " RETURNING id",
        incident_id,
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
    )
    if report.sender_keys:
        await conn.executemany(
            "INSERT INTO report_keys (key, report_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [(key, report_id) for key in set(report.sender_keys)],
        )
    return report_id

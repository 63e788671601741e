"""The vehicles register: which vehicle (registration, operator, type) a tracking device
(IMEI) is fitted to. The vehicle gateway fills it from alerts; operators fill it by REST.

``merge_device`` is the rule for what an alert may change (pure); the rest is SQL. An
operator's word wins: an alert fills only what is empty, except the registration a
device reports for itself, which follows the device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg

# What devices send when nobody configured the registration.
_PLACEHOLDERS = frozenset({"NA", "NULL", "NONE"})
_COLUMNS = "id, registration, imei, operator, vehicle_type, updated_by, created_at, updated_at"


def plate(text: str) -> str:
    """A registration as the register keeps it: its letters and digits, upper case
    (``od-02 ab 1234`` is ``OD02AB1234``)."""
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def normalise_registration(text: str) -> str | None:
    """A registration a device or backend sent (``plate``); None for a device's
    placeholder (NA00000000, N.A, zeros) or an IMEI in its place."""
    value = plate(text)
    if not value or value in _PLACEHOLDERS or set(value) <= {"0"}:
        return None
    if value.startswith("NA0") or re.fullmatch(r"[0-9]{15}", value) or len(value) > 20:
        return None
    return value


@dataclass(frozen=True, slots=True)
class VehicleRow:
    """A register row as the rule sees it."""

    id: int
    registration: str | None
    imei: str | None
    operator: str | None
    vehicle_type: str | None


@dataclass(frozen=True, slots=True)
class DeviceSays:
    """What one alert says about its vehicle (``registration`` normalised)."""

    imei: str
    registration: str | None
    operator: str | None
    vehicle_type: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """What to write: insert (``row_id`` None) or update the row, these columns."""

    row_id: int | None
    columns: dict[str, str | None]


def merge_device(
    says: DeviceSays, by_imei: VehicleRow | None, by_registration: VehicleRow | None
) -> Change | None:
    """What an alert changes in the register; None for nothing.

    ``by_imei`` and ``by_registration`` are the rows holding the alert's IMEI and its
    registration (the same row, two, or none).
    """
    if by_imei is None:
        if by_registration is not None:
            # The vehicle is known (an operator entered it): its device is this one now.
            return _fill(says, by_registration, {"imei": says.imei})
        return Change(
            None,
            {
                "imei": says.imei,
                "registration": says.registration,
                "operator": says.operator,
                "vehicle_type": says.vehicle_type,
            },
        )
    columns: dict[str, str | None] = {}
    moved = says.registration is not None and says.registration != by_imei.registration
    # A registration another row holds stays there: an operator sorts that out.
    if moved and (by_registration is None or by_registration.id == by_imei.id):
        columns["registration"] = says.registration
    return _fill(says, by_imei, columns)


def _fill(says: DeviceSays, row: VehicleRow, columns: dict[str, str | None]) -> Change | None:
    """``columns``, and the operator and type the row lacks, as one change (None: none)."""
    columns = {k: v for k, v in columns.items() if getattr(row, k) != v}
    if says.operator and not row.operator:
        columns["operator"] = says.operator
    if says.vehicle_type and not row.vehicle_type:
        columns["vehicle_type"] = says.vehicle_type
    return Change(row.id, columns) if columns else None


async def record_device(conn: asyncpg.Connection, says: DeviceSays, *, actor: str) -> None:
    """Apply what an alert says to the register (a write only when something changes)."""
    rows = await conn.fetch(
        "SELECT id, registration, imei, operator, vehicle_type FROM vehicles"
        " WHERE imei = $1 OR registration = $2 FOR UPDATE",
        says.imei,
        says.registration,
    )
    by_imei = next((_row(r) for r in rows if r["imei"] == says.imei), None)
    by_registration = next(
        (_row(r) for r in rows if says.registration and r["registration"] == says.registration),
        None,
    )
    change = merge_device(says, by_imei, by_registration)
    if change is not None:
        await _write(conn, change, actor)


async def put_vehicle(
    conn: asyncpg.Connection,
    registration: str,
    *,
    operator: str | None,
    vehicle_type: str | None,
    imei: str | None,
    actor: str,
) -> dict[str, Any]:
    """An operator's record of a vehicle (registration normalised): created or replaced.

    An IMEI another vehicle had moves to this one (the device was refitted); the answer
    says from which registration in ``imei_moved_from``.
    """
    moved_from = None
    if imei is not None:
        # A row of the gateway's that knew only this IMEI (no registration yet) is this
        # vehicle; the operator's record replaces it.
        await conn.execute("DELETE FROM vehicles WHERE imei = $1 AND registration IS NULL", imei)
        moved_from = await conn.fetchval(
            "UPDATE vehicles SET imei = NULL, updated_by = $3, updated_at = now()"
            " WHERE imei = $1 AND registration <> $2 RETURNING registration",
            imei,
            registration,
            actor,
        )
    row = await conn.fetchrow(
        "INSERT INTO vehicles (registration, imei, operator, vehicle_type, updated_by)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (registration) DO UPDATE SET"
        " imei = coalesce(excluded.imei, vehicles.imei), operator = excluded.operator,"
        " vehicle_type = excluded.vehicle_type, updated_by = excluded.updated_by,"
        f" updated_at = now() RETURNING {_COLUMNS}",
        registration,
        imei,
        operator,
        vehicle_type,
        actor,
    )
    return {**vehicle_view(row), "imei_moved_from": moved_from}


async def list_vehicles(
    conn: asyncpg.Connection, *, registration: str | None, imei: str | None, limit: int
) -> list[dict[str, Any]]:
    """Register rows, newest change first; filtered by exact registration or IMEI."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM vehicles WHERE ($1::text IS NULL OR registration = $1)"
        " AND ($2::text IS NULL OR imei = $2) ORDER BY updated_at DESC, id DESC LIMIT $3",
        registration,
        imei,
        limit,
    )
    return [vehicle_view(r) for r in rows]


async def vehicle_of_incident(conn: asyncpg.Connection, incident_id: int) -> dict[str, Any] | None:
    """The vehicle an incident's latest vehicle alert came from, with what the register
    knows of it (operator, type); None for an incident with no vehicle alert."""
    row = await conn.fetchrow(
        "SELECT r.payload->>'imei' AS imei, r.payload->>'registration' AS registration,"
        " v.id, v.registration AS known_registration, v.operator, v.vehicle_type"
        " FROM reports r LEFT JOIN vehicles v ON v.imei = r.payload->>'imei'"
        " OR (v.imei IS NULL AND v.registration = r.payload->>'registration')"
        " WHERE r.incident_id = $1 AND r.channel = 'vehicle'"
        " ORDER BY r.id DESC, v.imei NULLS LAST LIMIT 1",
        incident_id,
    )
    if row is None:
        return None
    return {
        "registration": row["known_registration"] or row["registration"],
        "imei": row["imei"],
        "operator": row["operator"],
        "vehicle_type": row["vehicle_type"],
        "registered": row["id"] is not None,
    }


def vehicle_view(row: asyncpg.Record) -> dict[str, Any]:
    """A register row as REST shows it."""
    return {
        "id": row["id"],
        "registration": row["registration"],
        "imei": row["imei"],
        "operator": row["operator"],
        "vehicle_type": row["vehicle_type"],
        "updated_by": row["updated_by"],
        "updated_at": row["updated_at"].isoformat(),
    }


def _row(record: asyncpg.Record) -> VehicleRow:
    return VehicleRow(
        record["id"],
        record["registration"],
        record["imei"],
        record["operator"],
        record["vehicle_type"],
    )


async def _write(conn: asyncpg.Connection, change: Change, actor: str) -> None:
    names = list(change.columns)
    values = [change.columns[n] for n in names]
    if change.row_id is None:
        columns = ", ".join([*names, "updated_by"])
        slots = ", ".join(f"${i}" for i in range(1, len(names) + 2))
        # Two alerts of a new device at once: the second finds the first's row.
        await conn.execute(
            f"INSERT INTO vehicles ({columns}) VALUES ({slots}) ON CONFLICT DO NOTHING",
            *values,
            actor,
        )
        return
    sets = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=2))
    await conn.execute(
        f"UPDATE vehicles SET {sets}, updated_by = ${len(names) + 2}, updated_at = now()"
        " WHERE id = $1",
        change.row_id,
        *values,
        actor,
    )

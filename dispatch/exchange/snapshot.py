"""Reads what the EIDO builder needs for one incident, in one consistent snapshot."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from dispatch import readmodels
from dispatch.exchange.agencies import Agency
from dispatch.exchange.eido import Origin, PartnerAgency, build_eido


async def incident_and_units(
    conn: asyncpg.Connection, incident_id: int
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]] | None:
    """The incident's read model and the units of its assignments, by id (None: no such
    incident); the caller chooses the transaction."""
    incident = await readmodels.incident_detail(conn, incident_id)
    if incident is None:
        return None
    units = {}
    for unit_id in sorted({a["unit_id"] for a in incident["assignments"]}):
        unit = await readmodels.unit_view(conn, unit_id)
        if unit is not None:
            units[unit_id] = unit
    return incident, units


async def incident_eido(
    conn: asyncpg.Connection,
    incident_id: int,
    *,
    origin: Origin,
    agencies: dict[str, Agency],
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The incident's read model and its EIDO, or None when there is no such incident."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        found = await incident_and_units(conn, incident_id)
        if found is None:
            return None
        incident, units = found
        rows = await conn.fetch(
            "SELECT DISTINCT ON (agency_id) agency_id, state, remote_status FROM handoffs"
            " WHERE incident_id = $1 ORDER BY agency_id, id DESC",
            incident_id,
        )
    partners = [
        PartnerAgency(
            r["agency_id"],
            agencies[r["agency_id"]].type if r["agency_id"] in agencies else "psap",
            r["remote_status"] or r["state"],
        )
        for r in rows
    ]
    eido = build_eido(
        incident, units=units, origin=origin, partners=partners, now=datetime.now(UTC)
    )
    return incident, eido

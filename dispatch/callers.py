"""A caller's history with 112: past incidents, blank calls, hoaxes.

Operators see it with every new report, so a number that keeps pocket-dialling or
hoaxing is recognised at once, and a genuine repeat victim too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

# Three blank calls in a day is a pattern (a faulty handset, a child, a hoaxer), not
# three emergencies; operators are told, the calls are still taken.
REPEAT_BLANK_CALLS = 3


async def caller_history(
    conn: asyncpg.Connection,
    keys: list[str],
    *,
    exclude_incident: int | None = None,
    shows_id: Callable[[str | None], bool] = lambda _zone: True,
) -> dict[str, Any]:
    """Counts and the latest incidents of everyone identified by ``keys``.

    Every viewer gets the counts, types and statuses (a hoax record matters wherever the
    next call lands); an incident's ``id`` only where ``shows_id(its zone)`` says the
    viewer may see that incident (``dispatch.access``): a desk must not learn another
    zone's incident ids.

    One indexed lookup per key (an equality on report_keys' primary key, which a
    prepared statement's generic plan still serves by index), then the incidents by
    primary key: this runs on every report, inside the intake transaction.
    """
    incident_ids: set[int] = set()
    blank = 0
    for key in dict.fromkeys(keys):
        rows = await conn.fetch(
            "SELECT r.incident_id, r.silent, k.received_at > now() - interval '24 hours'"
            " AS today FROM report_keys k JOIN reports r ON r.id = k.report_id"
            " WHERE k.key = $1 ORDER BY k.received_at DESC LIMIT 500",
            key,
        )
        for row in rows:
            if row["incident_id"] == exclude_incident:
                continue
            incident_ids.add(row["incident_id"])
            blank += row["silent"] and row["today"]
    incidents = (
        await conn.fetch(
            "SELECT id, status, type, disposition, created_at, zone_id FROM incidents"
            " WHERE id = ANY($1::bigint[]) ORDER BY id DESC",
            sorted(incident_ids),
        )
        if incident_ids
        else []
    )
    hoaxes = sum(1 for r in incidents if (r["disposition"] or "").lower() == "hoax")
    flags = []
    if blank >= REPEAT_BLANK_CALLS:
        flags.append("repeat_blank_caller")
    if hoaxes:
        flags.append("hoax_history")
    return {
        "incidents": len(incidents),
        "blank_calls_24h": blank,
        "hoaxes": hoaxes,
        "recent": [
            {
                "id": r["id"] if shows_id(r["zone_id"]) else None,
                "status": r["status"],
                "type": r["type"],
                "disposition": r["disposition"],
                "created_at": r["created_at"].isoformat(),
            }
            for r in incidents[:10]
        ],
        "flags": flags,
    }

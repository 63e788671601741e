"""A caller's history with 112: past incidents, blank calls, hoaxes.

Operators see it with every new report, so a number that keeps pocket-dialling or
hoaxing is recognised at once, and a genuine repeat victim too.
"""

from __future__ import annotations

from typing import Any

import asyncpg

# Three blank calls in a day is a pattern (a faulty handset, a child, a hoaxer), not
# three emergencies; operators are told, the calls are still taken.
REPEAT_BLANK_CALLS = 3


async def caller_history(
    conn: asyncpg.Connection, keys: list[str], *, exclude_incident: int | None = None
) -> dict[str, Any]:
    """Counts and the latest incidents of everyone identified by ``keys``."""
    if not keys:
        return {"incidents": 0, "blank_calls_24h": 0, "hoaxes": 0, "recent": [], "flags": []}
    rows = await conn.fetch(
        "SELECT DISTINCT ON (i.id) i.id, i.status, i.type, i.disposition, i.created_at"
        " FROM report_keys k JOIN reports r ON r.id = k.report_id"
        " JOIN incidents i ON i.id = r.incident_id"
        " WHERE k.key = ANY($1::text[]) AND i.id IS DISTINCT FROM $2"
        " ORDER BY i.id DESC LIMIT 200",
        keys,
        exclude_incident,
    )
    blank = await conn.fetchval(
        "SELECT count(*) FROM report_keys k JOIN reports r ON r.id = k.report_id"
        " WHERE k.key = ANY($1::text[]) AND r.silent AND r.incident_id IS DISTINCT FROM $2"
        " AND k.received_at > now() - interval '24 hours'",
        keys,
        exclude_incident,
    )
    hoaxes = sum(1 for r in rows if (r["disposition"] or "").lower() == "hoax")
    flags = []
    if blank >= REPEAT_BLANK_CALLS:
        flags.append("repeat_blank_caller")
    if hoaxes:
        flags.append("hoax_history")
    return {
        "incidents": len(rows),
        "blank_calls_24h": blank,
        "hoaxes": hoaxes,
        "recent": [
            {
                "id": r["id"],
                "status": r["status"],
                "type": r["type"],
                "disposition": r["disposition"],
                "created_at": r["created_at"].isoformat(),
            }
            for r in rows[:10]
        ],
        "flags": flags,
    }

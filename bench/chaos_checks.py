"""What bench/chaos.py records and checks: the deliveries, the fault phases, and what
PostgreSQL says about them afterwards (lost, duplicated, unserved, double-assigned)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg

SCHEMA = "chaos"


@dataclass
class Delivery:
    """One signed report and its latest answer."""

    key: str
    trigger: str
    body: bytes
    sent_at: float
    status: int | None = None  # None: no answer (connection refused or dropped)
    payload: Any = None
    first: str = ""  # the first answer's status code, or "conn"
    retried: bool = False

    @property
    def accepted(self) -> bool:
        """The latest answer was a 2xx."""
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Phase:
    """One fault: when it began and ended, and how long readiness took."""

    name: str
    start: float
    end: float = 0.0
    ready_s: float = float("nan")
    flaps: int = 0  # /readyz checks not ready after the first ready answer


async def sample_double_assignments(pg_url: str, stop: asyncio.Event, seen: set[str]) -> None:
    """Twice a second: units holding two active assignments (the store permitting)."""
    while not stop.is_set():
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn = await asyncpg.connect(pg_url, timeout=2)
            try:
                rows = await conn.fetch(
                    f"SELECT unit_id FROM {SCHEMA}.assignments"
                    " WHERE status IN ('offered', 'accepted') GROUP BY unit_id HAVING count(*) > 1"
                )
                seen.update(r["unit_id"] for r in rows)
            finally:
                await conn.close()
        await asyncio.sleep(0.5)


async def drain(pg_url: str, within: float = 30.0) -> None:
    """Wait (with a deadline) until no incident waits for a unit and every event is out;
    says so when the deadline passes first (the checks then show what is left)."""
    conn = await asyncpg.connect(pg_url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            busy = await conn.fetchval(
                f"SELECT (SELECT count(*) FROM {SCHEMA}.incidents WHERE cardinality(unfilled) > 0"
                " AND status NOT IN ('closed', 'merged'))"
                f" + (SELECT count(*) FROM {SCHEMA}.events WHERE NOT published)"
            )
            if busy == 0:
                return
            await asyncio.sleep(0.5)
        print(f"not drained after {within:.0f} s: {busy} incidents waiting or events unpublished")
    finally:
        await conn.close()


async def check_store(pg_url: str, deliveries: list[Delivery]) -> dict[str, Any]:
    """Lost and duplicated deliveries, incidents never offered a unit or never taken by
    one, from PostgreSQL."""
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"SET search_path TO {SCHEMA}")
        counts = {
            r["external_id"]: r["n"]
            for r in await conn.fetch(
                "SELECT external_id, count(*) AS n FROM reports"
                " WHERE external_id = ANY($1::text[]) GROUP BY external_id",
                [d.trigger for d in deliveries],
            )
        }
        never_offered = {
            f"{r['status']}{' escalated' if r['escalated'] else ''}: {r['why']}": r["n"]
            for r in await conn.fetch(
                "SELECT status, escalated, coalesce(waiting_reason, '-') AS why, count(*) AS n"
                " FROM incidents i WHERE NOT EXISTS"
                " (SELECT 1 FROM assignments a WHERE a.incident_id = i.id)"
                " GROUP BY status, escalated, why"
            )
        }
        unpublished = await conn.fetchval("SELECT count(*) FROM events WHERE NOT published")

        async def reports_without(statuses: str) -> set[str]:
            rows = await conn.fetch(
                "SELECT r.external_id FROM reports r WHERE NOT EXISTS (SELECT 1 FROM"
                " assignments a WHERE a.incident_id = r.incident_id"
                f" AND a.status IN ({statuses}))"
            )
            return {r["external_id"] for r in rows}

        unserved = await reports_without(
            "'offered', 'accepted', 'declined', 'expired', 'cancelled', 'completed'"
        )
        # Offers an MDT never took: e.g. events that stopped reaching its socket.
        untaken = await reports_without("'accepted', 'completed'")
    finally:
        await conn.close()
    return {
        "counts": counts,
        "never_offered": never_offered,
        "unserved": unserved,
        "untaken": untaken,
        "unpublished": unpublished,
    }


def summarise(phases: list[Phase], deliveries: list[Delivery], store: dict[str, Any]) -> None:
    """Print the per-fault table and the totals."""
    counts: dict[str, int] = store["counts"]
    unserved: set[str] = store["unserved"]
    print(f"\n{'fault':<10}{'sent':>6}{'2xx':>6}  {'non-2xx (first answer)':<26}{'lost':>6}"
          f"{'dup':>5}{'no unit':>8}{'untaken':>8}{'ready s':>9}{'flaps':>6}")  # fmt: skip
    for phase in phases:
        mine = [d for d in deliveries if phase.start <= d.sent_at < phase.end]
        ok = sum(1 for d in mine if d.first.startswith("2"))
        codes = Counter(d.first for d in mine if not d.first.startswith("2"))
        lost = sum(1 for d in mine if d.accepted and counts.get(d.trigger, 0) == 0)
        dup = sum(1 for d in mine if counts.get(d.trigger, 0) > 1)
        alone = sum(1 for d in mine if d.trigger in unserved)
        untaken = sum(1 for d in mine if d.trigger in store["untaken"])
        refused = " ".join(f"{c}:{n}" for c, n in sorted(codes.items())) or "-"
        print(f"{phase.name:<10}{len(mine):>6}{ok:>6}  {refused:<26}{lost:>6}{dup:>5}"
              f"{alone:>8}{untaken:>8}{phase.ready_s:>9.2f}{phase.flaps:>6}")  # fmt: skip
    accepted = [d for d in deliveries if d.accepted]
    print(
        f"\nall: {len(deliveries)} sent, {len(accepted)} accepted in the end "
        f"({sum(d.retried and d.accepted for d in deliveries)} after a retry), "
        f"lost {sum(1 for d in accepted if counts.get(d.trigger, 0) == 0)}, "
        f"duplicated {sum(1 for n in counts.values() if n > 1)}, "
        f"incidents never offered {store['never_offered']}, "
        f"events unpublished {store['unpublished']}"
    )

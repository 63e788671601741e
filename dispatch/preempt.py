"""Pre-emption: with no unit free for a priority-1 incident, take the best one off a
lesser job (where the deployment allows it), never a crew already on scene; the job it
left waits for another unit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from dispatch import incident_log
from dispatch.core.facts import IncidentFacts, Need
from dispatch.core.plans import preempt_order
from dispatch.events import EventType, NewEvent, append_events
from dispatch.offer_rows import Offer

if TYPE_CHECKING:
    from dispatch.offers import Dispatcher


async def preempt(
    dispatcher: Dispatcher,
    conn: asyncpg.Connection,
    incident: IncidentFacts,
    need: Need,
    *,
    actor: str,
    exclude: frozenset[str],
) -> Offer | None:
    """Take the best unit for ``need`` off a low-priority job for a priority-1
    incident (``preempt_priority``: jobs of that priority or lower may lose their
    unit). Crews already on scene are not pulled away."""
    agency = need.agency
    rows = await conn.fetch(
        "SELECT u.id, u.agency, u.zone_id, u.lat, u.lon, u.capabilities, u.status,"
        " extract(epoch FROM u.position_at)::float8 AS at,"
        " extract(epoch FROM now())::float8 AS now,"
        " a.id AS assignment_id, a.incident_id FROM assignments a"
        " JOIN incidents i ON i.id = a.incident_id JOIN units u ON u.id = a.unit_id"
        " WHERE a.status IN ('offered', 'accepted') AND a.agency = $1"
        " AND i.priority >= $2 AND u.status IN ('offered', 'dispatched', 'en_route')"
        " AND u.lat IS NOT NULL",
        agency,
        dispatcher.rules.preempt_priority,
    )
    busy = {r["id"]: r for r in rows}
    snapshots = await dispatcher.fleet.placed(rows, fresh_only=False)
    for candidate in preempt_order(need, snapshots, exclude, dispatcher.policy, dispatcher.travel):
        row = busy[candidate.unit_id]
        await conn.execute("SAVEPOINT preempt")
        taken = await conn.fetchval(
            "UPDATE assignments SET status = 'cancelled', responded_at = now()"
            " WHERE id = $1 AND status IN ('offered', 'accepted') RETURNING incident_id",
            row["assignment_id"],
        )
        freed = await conn.fetchval(
            "UPDATE units SET status = 'available', updated_at = now()"
            " WHERE id = $1 AND status = $2 RETURNING id",
            candidate.unit_id,
            row["status"],
        )
        if taken is None or freed is None:
            # The crew answered or moved on since the read: not pre-emptible now.
            # Both updates are undone with the savepoint, and the next unit is tried.
            await conn.execute("ROLLBACK TO SAVEPOINT preempt")
            continue
        reason = f"pre-empted by incident {incident.id} (priority 1)"
        await append_events(
            conn,
            dispatcher.schema,
            [
                NewEvent(
                    EventType.ASSIGNMENT_CANCELLED,
                    actor,
                    taken,
                    candidate.unit_id,
                    {"assignment_id": row["assignment_id"], "reason": reason},
                ),
                incident_log.unit_status_change(
                    candidate.unit_id,
                    row["status"],
                    "available",
                    actor,
                    assignment_id=row["assignment_id"],
                    reason=reason,
                ),
            ],
        )
        await incident_log.reopen(conn, taken, agency)
        await incident_log.wait(
            conn, dispatcher.schema, taken, actor=actor, reason=f"its {agency} unit was {reason}"
        )
        offer = await dispatcher.claim_and_offer(
            conn, incident, candidate, agency, actor=actor, reason=reason
        )
        if offer is not None:
            return offer
    return None

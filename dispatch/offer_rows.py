"""An offer's rows: claiming a free unit (a conditional UPDATE, so two transactions
never take one unit) and writing the offer (assignment, the incident's plan and
escalation, the events) once a claim won."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from dispatch.core.facts import IncidentFacts
from dispatch.core.rank import Candidate
from dispatch.events import EventType, NewEvent, append_event, append_events
from dispatch.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Offer:
    """An offer made to a unit."""

    assignment_id: int
    unit_id: str
    expires_at: datetime
    travel_time_s: float


async def claim(conn: asyncpg.Connection, unit_id: str) -> bool:
    """Take an available unit for an offer; False if it is no longer available (another
    transaction claimed it first: PostgreSQL's row lock decides)."""
    claimed = await conn.fetchval(
        "UPDATE units SET status = 'offered', updated_at = now()"
        " WHERE id = $1 AND status = 'available' RETURNING id",
        unit_id,
    )
    return claimed is not None


async def write_offer(
    conn: asyncpg.Connection,
    schema: str,
    incident: IncidentFacts,
    candidate: Candidate,
    agency: str,
    *,
    actor: str,
    timeout_s: float,
    metrics: Metrics | None,
    reason: str | None = None,
) -> Offer:
    """Offer the claimed unit the incident's slot of ``agency``: the assignment row, the
    incident's plan and escalation updated in one statement, and the events."""
    row = await conn.fetchrow(
        "INSERT INTO assignments"
        " (incident_id, unit_id, agency, status, expires_at, travel_time_s)"
        " VALUES ($1, $2, $3, 'offered', now() + make_interval(secs => $4), $5)"
        " RETURNING id, expires_at",
        incident.id,
        candidate.unit_id,
        agency,
        timeout_s,
        candidate.travel_time_s,
    )
    offer = Offer(row["id"], candidate.unit_id, row["expires_at"], candidate.travel_time_s)
    # Units on their way for every slot of the plan answer whatever the incident was
    # escalated for (no location, no unit in reach, offers refused): the flag goes,
    # in the same statement. One slot still empty keeps it.
    updated = await conn.fetchrow(
        "UPDATE incidents i SET unfilled = array_remove(i.unfilled, $2), updated_at = now(),"
        " status = CASE WHEN i.status IN ('new', 'queued') THEN 'offered' ELSE i.status END,"
        " escalated = i.escalated AND cardinality(array_remove(i.unfilled, $2)) > 0,"
        " escalation_reason = CASE WHEN cardinality(array_remove(i.unfilled, $2)) > 0"
        " THEN i.escalation_reason END,"
        " waiting_reason = CASE WHEN cardinality(array_remove(i.unfilled, $2)) > 0"
        " THEN i.waiting_reason END"
        " FROM (SELECT escalated, escalation_reason FROM incidents WHERE id = $1) AS before"
        " WHERE i.id = $1 RETURNING i.status, extract(epoch FROM now() - i.created_at) AS age,"
        " (SELECT count(*) FROM assignments WHERE incident_id = $1) AS offers,"
        " before.escalated AND NOT i.escalated AS cleared, before.escalation_reason AS was",
        incident.id,
        agency,
    )
    incident_status = updated["status"]
    if metrics is not None and updated["offers"] == 1:
        metrics.time_to_dispatch.observe(float(updated["age"]))
    data: dict[str, Any] = {
        "assignment_id": offer.assignment_id,
        "expires_at": offer.expires_at.isoformat(),
        "travel_time_s": round(offer.travel_time_s, 1),
        "distance_m": round(candidate.distance_m, 1),
        "tier": candidate.tier.name.lower() if candidate.tier is not None else "manual",
        "agency": agency,
        "incident_status": incident_status,
        "incident": {
            "type": incident.type.name,
            "priority": incident.type.priority,
            "location": {"lat": incident.point.lat, "lon": incident.point.lon},
            "zone_id": incident.zone_id,
        },
    }
    if reason is not None:
        data["reason"] = reason
    log.info(
        "unit offered",
        extra={
            "incident_id": incident.id,
            "unit_id": offer.unit_id,
            "assignment_id": offer.assignment_id,
            "agency": agency,
            "tier": data["tier"],
        },
    )
    # The unit's status change and the offer, in one statement (the intake's hot path).
    await append_events(
        conn,
        schema,
        [
            # The incident it is offered, as every later status change of the job
            # carries; so, like them, it reaches the incident's desks (a desk of the
            # unit's zone must not learn another zone's incident id from it).
            NewEvent(
                EventType.UNIT_STATUS_CHANGED,
                actor,
                incident_id=incident.id,
                unit_id=offer.unit_id,
                data={
                    "from": "available",
                    "to": "offered",
                    "assignment_id": offer.assignment_id,
                },
            ),
            NewEvent(
                EventType.ASSIGNMENT_OFFERED,
                actor,
                incident_id=incident.id,
                unit_id=offer.unit_id,
                data=data,
            ),
        ],
    )
    if updated["cleared"]:
        await append_event(
            conn,
            schema,
            EventType.INCIDENT_DEESCALATED,
            actor=actor,
            incident_id=incident.id,
            data={
                "reason": f"every agency of the plan has a unit ({agency}: {offer.unit_id})",
                "was": updated["was"],
            },
        )
    return offer

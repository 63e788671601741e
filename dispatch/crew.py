"""A crew's side of a job: its answer to an offer, its status reports, and where it
waits after the job (the standby rule), as the MDT sends them.

The lifecycles are the core's (dispatch.core.lifecycle: answer_offer, crew_report);
this applies their verdicts: the rows, the events, and what follows (a declined slot is
offered again, a finished job may make the incident ready to close or name a post).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import asyncpg

from dispatch import incident_log
from dispatch.core.lifecycle import Refused, answer_offer, crew_report
from dispatch.errors import NotFound
from dispatch.events import EventType, NewEvent, append_event, append_events
from dispatch.posts import CoveragePosts
from geo.points import GeoPoint

if TYPE_CHECKING:
    from dispatch.offers import Dispatcher

log = logging.getLogger(__name__)


def keep_post_sql(*, unless: str = "false") -> str:
    """SET clause for a status change ($2): a standby post holds while the unit is
    available or returning (and ``unless`` is false), and is dropped when it takes a
    job or goes off duty or out of service."""
    keep = f"$2 IN ('available', 'returning') AND NOT ({unless})"
    return (
        f"post_lat = CASE WHEN {keep} THEN post_lat END,"
        f" post_lon = CASE WHEN {keep} THEN post_lon END"
    )


KEEP_POST = keep_post_sql()


class Crew:
    """Applies MDT answers and crew reports, in the caller's transaction."""

    def __init__(self, *, schema: str, dispatcher: Dispatcher, posts: CoveragePosts | None) -> None:
        self._schema = schema
        self._dispatcher = dispatcher
        self._posts = posts

    async def respond(
        self, conn: asyncpg.Connection, *, unit_id: str, assignment_id: int, accept: bool
    ) -> dict[str, Any]:
        """Apply an MDT's accept or decline; returns the assignment as the MDT sees it.

        Raises NotFound for an assignment that is not this unit's (without saying whose
        it is), OfferExpired after the deadline and InvalidTransition if it was already
        answered.
        """
        row = await conn.fetchrow(
            "SELECT id, incident_id, unit_id, agency, status, expires_at <= now() AS late,"
            " extract(epoch FROM now() - offered_at) AS waited"
            " FROM assignments WHERE id = $1 FOR UPDATE",
            assignment_id,
        )
        if row is None or row["unit_id"] != unit_id:
            raise NotFound("assignment", assignment_id)
        answer = answer_offer(assignment_id, row["status"], late=row["late"], accept=accept)
        if isinstance(answer, Refused):
            raise answer.error()
        actor = f"unit:{unit_id}"
        log.info(
            "offer %s",
            answer.assignment_status,
            extra={
                "incident_id": row["incident_id"],
                "unit_id": unit_id,
                "assignment_id": assignment_id,
            },
        )
        incident_id: int = row["incident_id"]
        # The assignment, the unit and (when the answer moves it) the incident in one
        # round trip: three rows by primary key, none depending on another's update.
        await conn.execute(
            "WITH a AS (UPDATE assignments SET status = $4, responded_at = now()"
            " WHERE id = $1),"
            f" u AS (UPDATE units SET status = $2, updated_at = now(), {KEEP_POST}"
            " WHERE id = $3)"
            " UPDATE incidents SET status = $6, updated_at = now()"
            " WHERE id = $5 AND $6::text IS NOT NULL AND status IN ('new', 'queued', 'offered')",
            assignment_id,
            answer.unit_status,
            unit_id,
            answer.assignment_status,
            incident_id,
            answer.incident_status,
        )
        if accept and self._dispatcher.metrics is not None:
            self._dispatcher.metrics.time_to_accept.observe(float(row["waited"]))
        if answer.incident_status is None:
            await incident_log.reopen(conn, incident_id, row["agency"])
        await append_events(
            conn,
            self._schema,
            [
                NewEvent(
                    EventType.ASSIGNMENT_ACCEPTED if accept else EventType.ASSIGNMENT_DECLINED,
                    actor,
                    incident_id,
                    unit_id,
                    # After a decline the incident's next status comes with the
                    # re-offer's events.
                    {"assignment_id": assignment_id, "incident_status": answer.incident_status}
                    if answer.incident_status is not None
                    else {"assignment_id": assignment_id},
                ),
                incident_log.unit_status_change(
                    unit_id,
                    "offered",
                    answer.unit_status,
                    actor,
                    assignment_id=assignment_id,
                    incident_id=incident_id,
                ),
            ],
        )
        if answer.reoffer:
            await self._dispatcher.reoffer(conn, incident_id, actor=actor)
        return {
            "assignment_id": assignment_id,
            "incident_id": incident_id,
            "status": answer.assignment_status,
        }

    async def report_status(
        self, conn: asyncpg.Connection, *, unit_id: str, status: str, actor: str
    ) -> dict[str, Any]:
        """Apply a crew's status report (en_route, on_scene, returning, available, ...).

        Finishing a job (returning or available) completes the unit's assignment.
        Raises InvalidTransition for a change the lifecycle does not allow.
        """
        current = await conn.fetchval("SELECT status FROM units WHERE id = $1 FOR UPDATE", unit_id)
        if current is None:
            raise NotFound("unit", unit_id)
        change = crew_report(unit_id, current, status)
        if isinstance(change, Refused):
            raise change.error()
        # The unit, its job (the one accepted assignment) and the job's incident in one
        # round trip. A finished job completes the assignment and drops the post the
        # unit had before it (stale now; the rule may name a new one).
        assignment = await conn.fetchrow(
            "WITH a AS (SELECT id, incident_id FROM assignments"
            " WHERE unit_id = $1 AND status = 'accepted' LIMIT 1),"
            " u AS (UPDATE units SET status = $2, updated_at = now(),"
            f" {keep_post_sql(unless='$3 AND EXISTS (SELECT 1 FROM a)')} WHERE id = $1),"
            " done AS (UPDATE assignments SET status = 'completed'"
            " WHERE $3 AND id = (SELECT id FROM a) AND status = 'accepted'),"
            " moved AS (UPDATE incidents SET status = $4, updated_at = now()"
            " WHERE $4::text IS NOT NULL AND id = (SELECT incident_id FROM a)"
            " AND status = ANY($5::text[]) RETURNING status)"
            " SELECT a.id, a.incident_id, EXISTS (SELECT 1 FROM moved) AS moved FROM a",
            unit_id,
            status,
            change.ends_assignment,
            change.incident_status,
            list(change.incident_moves_from),
        )
        extra: dict[str, Any] = {}
        job_done = False
        if assignment is not None:
            if assignment["moved"]:
                extra["incident_status"] = change.incident_status
            if change.ends_assignment:
                extra["assignment_status"] = "completed"
                job_done = True
        await append_events(
            conn,
            self._schema,
            [
                incident_log.unit_status_change(
                    unit_id,
                    current,
                    status,
                    actor,
                    assignment_id=assignment["id"] if assignment else None,
                    incident_id=assignment["incident_id"] if assignment else None,
                    **extra,
                )
            ],
        )
        if job_done and assignment is not None:
            await incident_log.ready_to_close(
                conn, self._schema, assignment["incident_id"], unit_id, status, actor
            )
        if job_done and self._posts is not None:
            await self._name_post(conn, unit_id, self._posts, actor=actor)
        return {"unit_id": unit_id, "status": status}

    async def _name_post(
        self, conn: asyncpg.Connection, unit_id: str, posts: CoveragePosts, *, actor: str
    ) -> None:
        """Tell a unit that just finished a job where to wait (the standby rule), from
        where the agency's other idle units stand or are headed."""
        unit = await conn.fetchrow(
            "SELECT agency, home_zone_id, lat, lon FROM units WHERE id = $1", unit_id
        )
        if unit is None or unit["lat"] is None or unit["home_zone_id"] is None:
            return
        area = posts.area(unit["home_zone_id"])
        if area is None:
            return
        # One crew of an agency at a time: two finishing together must each see the
        # other's new post, not both take the same best one.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            f"{self._schema}:posts:{unit['agency']}",
        )
        # The units that can be dispatched now (with a position available_units trusts),
        # and crews returning to a post they were named: where they wait or are headed.
        # Only those near the zone's posts share its coverage.
        others = await conn.fetch(
            "SELECT coalesce(post_lat, lat) AS lat, coalesce(post_lon, lon) AS lon FROM units"
            " WHERE agency = $1 AND id <> $2 AND lat IS NOT NULL"
            " AND (status = 'available' OR (status = 'returning' AND post_lat IS NOT NULL))"
            " AND ($7::float8 IS NULL OR position_at > now() - make_interval(secs => $7))"
            " AND coalesce(post_lat, lat) BETWEEN $3 AND $5"
            " AND coalesce(post_lon, lon) BETWEEN $4 AND $6",
            unit["agency"],
            unit_id,
            *area,
            self._dispatcher.rules.position_stale_s,
        )
        here = GeoPoint(lat=unit["lat"], lon=unit["lon"])
        post = posts.choose(
            unit["home_zone_id"], here, [GeoPoint(lat=r["lat"], lon=r["lon"]) for r in others]
        )
        if post is None:
            return
        await conn.execute(
            "UPDATE units SET post_lat = $2, post_lon = $3 WHERE id = $1",
            unit_id,
            post.point.lat,
            post.point.lon,
        )
        await append_event(
            conn,
            self._schema,
            EventType.UNIT_POST_ASSIGNED,
            actor=actor,
            unit_id=unit_id,
            # The desk of the post's zone follows it, wherever the job ended.
            zone_id=post.zone_id,
            data={
                "lat": post.point.lat,
                "lon": post.point.lon,
                "zone_id": post.zone_id,
                "policy": "coverage",
                "covers_per_hour": round(post.gain, 3),
            },
        )

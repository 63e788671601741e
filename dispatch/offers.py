"""Offers: claim the best available unit for an incident, and take the MDT's answer.

The shell around dispatch.core: it reads the snapshot (PostgreSQL's rows, each unit's
newest fix from Redis), asks the core what to do (decide_fill, answer_offer,
crew_report, the plan's verdicts) and applies it (claims, offers, events).

Claiming is a conditional UPDATE (``... WHERE status = 'available'``) inside the
caller's transaction: when two transactions race for one unit, the second blocks on the
row lock, re-checks the condition after the first commits, finds the unit taken and
moves on to its next candidate. PostgreSQL, not Redis, decides who wins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg

from dispatch.core import place
from dispatch.core.decide import SlotDecision, decide_fill, decide_slot
from dispatch.core.facts import (
    IncidentFacts,
    LiveFix,
    Need,
    PlanSnapshot,
    Rules,
    TravelModel,
    UnitSnapshot,
)
from dispatch.core.lifecycle import Refused, answer_offer, crew_report
from dispatch.core.plans import (
    Verdict,
    after_fill,
    after_refusals,
    preempt_order,
    slots_in_order,
)
from dispatch.core.rank import (
    Candidate,
    Policy,
    closest_idle,
    is_fresh,
    manual,
    need_of,
    with_live_fix,
)
from dispatch.errors import InvalidTransition, NotFound, UnknownIncidentType
from dispatch.events import EventType, NewEvent, append_event, append_events
from dispatch.incident_types import IncidentType
from dispatch.metrics import Metrics
from dispatch.posts import CoveragePosts
from dispatch.readmodels import READY_TO_CLOSE_SQL
from dispatch.unit_index import UnitIndex
from dispatch.zonestore import ZoneDirectory
from geo.location import Location
from geo.points import GeoPoint
from geo.zones import Zone, ZoneIndex


@dataclass(frozen=True, slots=True)
class Offer:
    """An offer made to a unit."""

    assignment_id: int
    unit_id: str
    expires_at: datetime
    travel_time_s: float


@dataclass(frozen=True, slots=True)
class Filled:
    """What one pass over an incident's plan did."""

    offers: list[Offer]
    missing: list[str]  # agencies no unit could be offered for
    held: list[str]  # agencies the policy holds for a unit that can arrive in time
    why: dict[str, str] = field(default_factory=dict)  # per missing agency, why

    @property
    def verdict(self) -> Verdict:
        """What the incident's record says after this pass (wait, escalate, nothing)."""
        return after_fill(self.missing, self.held, self.why)


log = logging.getLogger(__name__)

# How many of the nearest units the live index hands over for ranking: enough that the
# incident's own-zone units and the slack rule see every realistic contender.
_NEAREST = 64


# SET clause for a status change ($2): a standby post holds while the unit is available
# or returning, and is dropped when it takes a job or goes off duty or out of service.
KEEP_POST = (
    "post_lat = CASE WHEN $2 IN ('available', 'returning') THEN post_lat END,"
    " post_lon = CASE WHEN $2 IN ('available', 'returning') THEN post_lon END"
)


class Dispatcher:
    """Finds, claims and offers units; applies MDT answers. Runs in callers' transactions."""

    def __init__(
        self,
        *,
        schema: str,
        zones: ZoneDirectory,
        incident_types: dict[str, IncidentType],
        travel: TravelModel,
        offer_timeout_s: float,
        max_offers: int = 3,
        preempt_priority: int | None = None,
        zone_tolerance_m: float = 0.0,
        position_stale_s: float | None = None,
        unit_index: UnitIndex | None = None,
        metrics: Metrics | None = None,
        policy: Policy = closest_idle,
        posts: CoveragePosts | None = None,
        response_target_s: float = 600.0,
        zone_targets_s: Mapping[str, float] | None = None,
    ) -> None:
        self._schema = schema
        self._zones = zones
        self._types = incident_types
        self._travel = travel
        self._offer_timeout_s = offer_timeout_s
        self._zone_tolerance_m = zone_tolerance_m
        self._unit_index = unit_index
        self.metrics = metrics
        self._policy = policy
        self._posts = posts
        self.rules = Rules(
            max_offers=max_offers,
            preempt_priority=preempt_priority,
            position_stale_s=position_stale_s,
            response_target_s=response_target_s,
            zone_targets_s=dict(zone_targets_s or {}),
        )

    @property
    def zones(self) -> ZoneIndex:
        """The jurisdictions this dispatcher assigns by (the current index)."""
        return self._zones.index

    def locate(self, point: GeoPoint) -> Zone | None:
        """The jurisdiction of a point, with the configured tolerance for border gaps."""
        return self.zones.zone_of(point, tolerance_m=self._zone_tolerance_m)

    def other_zones(self, location: Location, zone: Zone | None) -> list[str]:
        """Other zones the location's circle of uncertainty overlaps."""
        return place.other_zones(self.zones, location, zone)

    def outside_reason(self, point: GeoPoint) -> str:
        """Why a point has no zone, flagging coordinates that look exchanged."""
        return place.outside_reason(self.zones, point)

    @property
    def policy(self) -> Policy:
        """The dispatch policy in use (closest_idle unless configured otherwise)."""
        return self._policy

    @property
    def travel(self) -> TravelModel:
        """How distances become driving times here."""
        return self._travel

    @property
    def max_offers(self) -> int:
        """Refused offers after which an incident is left to operators."""
        return self.rules.max_offers

    def incident_type(self, name: str) -> IncidentType:
        """The configured type of that name, or 'other' for a name not configured."""
        return self._types.get(name) or self._types["other"]

    @property
    def incident_types(self) -> dict[str, IncidentType]:
        """Every configured incident type, by name."""
        return dict(self._types)

    def known_type(self, name: str) -> IncidentType:
        """The configured type of that name; UnknownIncidentType otherwise."""
        if name not in self._types:
            raise UnknownIncidentType(name, sorted(self._types))
        return self._types[name]

    def need_of(self, incident: IncidentFacts, agency: str) -> Need:
        """What a unit of ``agency`` must offer to serve this incident."""
        return need_of(incident, agency, self._neighbours(incident), self.rules)

    def _neighbours(self, incident: IncidentFacts) -> frozenset[str]:
        return frozenset(self.zones.neighbours(incident.zone_id) if incident.zone_id else ())

    async def fill(
        self,
        conn: asyncpg.Connection,
        incident: IncidentFacts,
        *,
        actor: str,
        units: list[UnitSnapshot] | None = None,
        fresh: bool = False,
    ) -> Filled:
        """Offer a unit for each agency of the plan that has none yet: the offers made,
        the agencies still without a unit, and those the policy holds. ``fresh``: the
        incident was created in this transaction (its whole plan waits, nobody refused
        it yet), which spares two reads. ``units`` lets a caller that serves many
        incidents read the fleet once; without it each agency's nearest units come from
        the live index (the whole agency is read only if none of them can go)."""
        if fresh:
            unfilled: tuple[str, ...] = tuple(incident.type.plan)
            refused: frozenset[str] = frozenset()
        else:
            unfilled = tuple(
                await conn.fetchval("SELECT unfilled FROM incidents WHERE id = $1", incident.id)
            )
            refused = await self.refusals(conn, incident.id)
        nearest: dict[str, set[str]] = {}  # per agency, when only its nearest were read
        if units is None:
            units = []
            for agency in slots_in_order(incident.type.plan, unfilled):
                found, ids = await self._candidates(conn, incident, agency)
                units += found
                if ids is not None:
                    nearest[agency] = ids
        snapshot = PlanSnapshot(
            incident, unfilled, tuple(units), refused, self._neighbours(incident), time.time()
        )
        decision = decide_fill(snapshot, self._policy, self._travel, self.rules)
        filled = Filled([], [], [])
        for slot in decision.slots:
            offer = await self._claim_first(conn, incident, slot, actor)
            held, why = slot.held, slot.why
            if offer is None and slot.agency in nearest:
                # None of the nearest could go: the rest of the agency's fleet.
                rest = await self.available_units(conn, agency=slot.agency, stale=True)
                wider = replace(
                    snapshot,
                    units=tuple(u for u in rest if u.id not in nearest[slot.agency]),
                )
                again = decide_slot(wider, slot.agency, self._policy, self._travel, self.rules)
                offer = await self._claim_first(conn, incident, again, actor)
                held = held or again.held
                # Why, over the whole agency: the nearest and the rest together.
                whole = replace(snapshot, units=(*snapshot.units, *wider.units))
                why = decide_slot(whole, slot.agency, self._policy, self._travel, self.rules).why
            if offer is None and slot.preempt:
                offer = await self._preempt(conn, incident, slot.need, actor=actor, exclude=refused)
            if offer is not None:
                filled.offers.append(offer)
            elif held:
                # Held only while a unit that could go is kept back by the hold; with none
                # (all busy, refused, stale or out of reach) operators are told (missing).
                filled.held.append(slot.agency)
            else:
                filled.missing.append(slot.agency)
                # A unit claimed by another instance since the read leaves no reason.
                filled.why[slot.agency] = why or "the units ranked were taken meanwhile"
        return filled

    async def _candidates(
        self, conn: asyncpg.Connection, incident: IncidentFacts, agency: str
    ) -> tuple[list[UnitSnapshot], set[str] | None]:
        """Available units of ``agency`` to rank, and the ids the live index named when
        only the nearest were read (None: the whole agency was)."""
        # A policy with ``needs_fleet = True`` (a coverage rule) ranks the whole fleet.
        if self._unit_index is not None and not getattr(self._policy, "needs_fleet", False):
            ids = await self._unit_index.nearest(
                incident.point, agency, radius_m=self._travel.max_radius_m, count=_NEAREST
            )
            if ids:
                found = await self.available_units(conn, agency=agency, among=ids, stale=True)
                return found, set(ids)
        return await self.available_units(conn, agency=agency, stale=True), None

    async def _claim_first(
        self, conn: asyncpg.Connection, incident: IncidentFacts, slot: SlotDecision, actor: str
    ) -> Offer | None:
        """Offer the slot to its first candidate whose claim wins (another instance may
        have taken the better ones since the snapshot was read)."""
        for candidate in slot.ranked:
            if await self._claim(conn, candidate.unit_id):
                return await self._offer(conn, incident, candidate, slot.agency, actor=actor)
        return None

    async def available_units(
        self,
        conn: asyncpg.Connection,
        *,
        agency: str | None = None,
        among: list[str] | None = None,
        stale: bool = False,
    ) -> list[UnitSnapshot]:
        """Available units with a known and recent position, optionally of one agency.

        The position is the newest the MDT sent (the live fix in Redis, when it is newer
        than PostgreSQL's flushed copy). A unit whose MDT has not reported for
        ``position_stale_s`` may be anywhere (or its crew away from the vehicle): it is
        not trusted as available. ``stale``: include such units too (the core passes
        over them, and says so when nobody else could go).
        """
        # Two statements, not one with "$2 IS NULL OR id = ANY($2)": under a prepared
        # statement's generic plan that OR turns the primary-key lookup into a scan.
        columns = (
            "SELECT id, agency, zone_id, lat, lon, capabilities,"
            " extract(epoch FROM position_at)::float8 AS at,"
            " extract(epoch FROM now())::float8 AS now FROM units"
        )
        if among is None:
            rows = await conn.fetch(
                f"{columns} WHERE status = 'available' AND ($1::text IS NULL OR agency = $1)",
                agency,
            )
        else:
            rows = await conn.fetch(
                f"{columns} WHERE id = ANY($2::text[]) AND status = 'available'"
                " AND ($1::text IS NULL OR agency = $1)",
                agency,
                among,
            )
        return await self._placed(rows, fresh_only=not stale)

    async def _placed(
        self, rows: list[asyncpg.Record], *, fresh_only: bool = True
    ) -> list[UnitSnapshot]:
        """Units of these rows where their newest fix puts them (if it is fresh, unless
        ``fresh_only`` is off): one Redis round trip for the live fixes, PostgreSQL's
        positions without it."""
        if not rows:
            return []
        fixes: dict[str, LiveFix] | None = None
        if self._unit_index is not None:
            fixes = await self._unit_index.fixes([r["id"] for r in rows])
        fixes = fixes or {}
        zone_of = partial(place.zone_id_of, self.zones)
        units = []
        for r in rows:
            fix = fixes.get(r["id"])
            if r["lat"] is not None:
                stored = GeoPoint(lat=r["lat"], lon=r["lon"])
            elif fix is not None:
                stored = fix.point  # not flushed yet: the live fix alone places it
            else:
                continue  # never reported a position
            unit = with_live_fix(
                UnitSnapshot(
                    id=r["id"],
                    agency=r["agency"],
                    zone_id=r["zone_id"],
                    position=stored,
                    capabilities=frozenset(r["capabilities"]),
                    position_at=r["at"] if r["lat"] is not None else None,
                    status=r.get("status", "available"),
                ),
                fix,
                zone_of,
            )
            if not fresh_only or is_fresh(unit.position_at, r["now"], self.rules.position_stale_s):
                units.append(unit)
        return units

    async def offer_unit(
        self,
        conn: asyncpg.Connection,
        incident: IncidentFacts,
        unit_id: str,
        *,
        actor: str,
        reason: str,
    ) -> Offer:
        """Offer the incident to one chosen unit (an operator's override).

        Raises NotFound for an unknown unit and InvalidTransition if it is not available.
        """
        row = await conn.fetchrow(
            "SELECT status, agency, lat, lon FROM units WHERE id = $1", unit_id
        )
        if row is None:
            raise NotFound("unit", unit_id)
        if not await self._claim(conn, unit_id):
            raise InvalidTransition("unit", unit_id, row["status"], "offered")
        position = GeoPoint(lat=row["lat"], lon=row["lon"]) if row["lat"] is not None else None
        candidate = manual(incident, unit_id, position, self._travel)
        return await self._offer(
            conn, incident, candidate, row["agency"], actor=actor, reason=reason
        )

    async def _preempt(
        self,
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
            self.rules.preempt_priority,
        )
        busy = {r["id"]: r for r in rows}
        snapshots = await self._placed(rows, fresh_only=False)
        for candidate in preempt_order(need, snapshots, exclude, self._policy, self._travel):
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
            await append_event(
                conn,
                self._schema,
                EventType.ASSIGNMENT_CANCELLED,
                actor=actor,
                incident_id=taken,
                unit_id=candidate.unit_id,
                data={"assignment_id": row["assignment_id"], "reason": reason},
            )
            await self.unit_status_event(
                conn,
                candidate.unit_id,
                row["status"],
                "available",
                actor,
                assignment_id=row["assignment_id"],
                reason=reason,
            )
            await self.reopen(conn, taken, agency)
            await self.wait(conn, taken, actor=actor, reason=f"its {agency} unit was {reason}")
            if await self._claim(conn, candidate.unit_id):
                return await self._offer(
                    conn, incident, candidate, agency, actor=actor, reason=reason
                )
        return None

    async def _claim(self, conn: asyncpg.Connection, unit_id: str) -> bool:
        claimed = await conn.fetchval(
            "UPDATE units SET status = 'offered', updated_at = now()"
            " WHERE id = $1 AND status = 'available' RETURNING id",
            unit_id,
        )
        return claimed is not None

    async def _offer(
        self,
        conn: asyncpg.Connection,
        incident: IncidentFacts,
        candidate: Candidate,
        agency: str,
        *,
        actor: str,
        reason: str | None = None,
    ) -> Offer:
        row = await conn.fetchrow(
            "INSERT INTO assignments"
            " (incident_id, unit_id, agency, status, expires_at, travel_time_s)"
            " VALUES ($1, $2, $3, 'offered', now() + make_interval(secs => $4), $5)"
            " RETURNING id, expires_at",
            incident.id,
            candidate.unit_id,
            agency,
            self._offer_timeout_s,
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
        if self.metrics is not None and updated["offers"] == 1:
            self.metrics.time_to_dispatch.observe(float(updated["age"]))
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
            self._schema,
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
                self._schema,
                EventType.INCIDENT_DEESCALATED,
                actor=actor,
                incident_id=incident.id,
                data={
                    "reason": f"every agency of the plan has a unit ({agency}: {offer.unit_id})",
                    "was": updated["was"],
                },
            )
        return offer

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
        await conn.execute(
            "UPDATE assignments SET status = $2, responded_at = now() WHERE id = $1",
            assignment_id,
            answer.assignment_status,
        )
        await conn.execute(
            f"UPDATE units SET status = $2, updated_at = now(), {KEEP_POST} WHERE id = $1",
            unit_id,
            answer.unit_status,
        )
        incident_id: int = row["incident_id"]
        if accept and self.metrics is not None:
            self.metrics.time_to_accept.observe(float(row["waited"]))
        if answer.incident_status is not None:
            await conn.execute(
                "UPDATE incidents SET status = $2, updated_at = now()"
                " WHERE id = $1 AND status IN ('new', 'queued', 'offered')",
                incident_id,
                answer.incident_status,
            )
        else:
            await self.reopen(conn, incident_id, row["agency"])
        await append_event(
            conn,
            self._schema,
            EventType.ASSIGNMENT_ACCEPTED if accept else EventType.ASSIGNMENT_DECLINED,
            actor=actor,
            incident_id=incident_id,
            unit_id=unit_id,
            # After a decline the incident's next status comes with the re-offer's events.
            data={"assignment_id": assignment_id, "incident_status": answer.incident_status}
            if answer.incident_status is not None
            else {"assignment_id": assignment_id},
        )
        await self.unit_status_event(
            conn,
            unit_id,
            "offered",
            answer.unit_status,
            actor,
            assignment_id=assignment_id,
            incident_id=incident_id,
        )
        if answer.reoffer:
            await self.reoffer(conn, incident_id, actor=actor)
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
        await conn.execute(
            f"UPDATE units SET status = $2, updated_at = now(), {KEEP_POST} WHERE id = $1",
            unit_id,
            status,
        )
        assignment = await conn.fetchrow(
            "SELECT id, incident_id FROM assignments WHERE unit_id = $1 AND status = 'accepted'",
            unit_id,
        )
        extra: dict[str, Any] = {}
        job_done = False
        if assignment is not None:
            if change.incident_status is not None:
                moved = await conn.fetchval(
                    "UPDATE incidents SET status = $2, updated_at = now() WHERE id = $1"
                    " AND status = ANY($3::text[]) RETURNING status",
                    assignment["incident_id"],
                    change.incident_status,
                    list(change.incident_moves_from),
                )
                if moved is not None:
                    extra["incident_status"] = change.incident_status
            if change.ends_assignment:
                await conn.execute(
                    "UPDATE assignments SET status = 'completed' WHERE id = $1", assignment["id"]
                )
                extra["assignment_status"] = "completed"
                job_done = True
                # The post it had before this job is stale; the rule may name a new one.
                await conn.execute(
                    "UPDATE units SET post_lat = NULL, post_lon = NULL WHERE id = $1", unit_id
                )
        await self.unit_status_event(
            conn,
            unit_id,
            current,
            status,
            actor,
            assignment_id=assignment["id"] if assignment else None,
            incident_id=assignment["incident_id"] if assignment else None,
            **extra,
        )
        if job_done and assignment is not None:
            await self._ready_to_close(conn, assignment["incident_id"], unit_id, status, actor)
        if job_done and self._posts is not None:
            await self._name_post(conn, unit_id, self._posts, actor=actor)
        return {"unit_id": unit_id, "status": status}

    async def _ready_to_close(
        self, conn: asyncpg.Connection, incident_id: int, unit_id: str, status: str, actor: str
    ) -> None:
        """Tell operators an incident is ready to close when the job a crew just finished
        was its last: every slot had a unit, and none is offered or on its way. The
        incident itself stays open (only an operator closes, with a disposition)."""
        ready = await conn.fetchval(
            f"SELECT {READY_TO_CLOSE_SQL} FROM incidents i WHERE i.id = $1", incident_id
        )
        if not ready:
            return
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_READY_TO_CLOSE,
            actor=actor,
            incident_id=incident_id,
            data={
                "reason": f"every unit has finished (last: {unit_id}, now {status}):"
                " close it with a disposition",
            },
        )

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
            self.rules.position_stale_s,
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

    async def reclassify(
        self,
        conn: asyncpg.Connection,
        incident_id: int,
        kind: IncidentType,
        *,
        actor: str,
        reason: str,
    ) -> None:
        """Give the incident another type (and so priority and response plan).

        The plan's agencies not yet covered by a unit become unfilled; agencies the new
        plan does not list are no longer waited for.
        """
        previous = await conn.fetchrow(
            "SELECT type, priority FROM incidents WHERE id = $1 FOR UPDATE", incident_id
        )
        if previous is None:
            raise NotFound("incident", incident_id)
        await conn.execute(
            "UPDATE incidents SET type = $2, priority = $3, updated_at = now(),"
            " unfilled = ARRAY(SELECT unnest($4::text[]) EXCEPT"
            " SELECT agency FROM assignments WHERE incident_id = $1"
            " AND status IN ('offered', 'accepted', 'completed'))"
            " WHERE id = $1",
            incident_id,
            kind.name,
            kind.priority,
            list(kind.plan),
        )
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_REPRIORITISED,
            actor=actor,
            incident_id=incident_id,
            data={
                "type": kind.name,
                "priority": kind.priority,
                "previous": {"type": previous["type"], "priority": previous["priority"]},
                "reason": reason,
            },
        )

    async def reopen(self, conn: asyncpg.Connection, incident_id: int, agency: str) -> None:
        """Mark the plan's slot for ``agency`` as needing a unit again."""
        await conn.execute(
            "UPDATE incidents SET unfilled = array_append(unfilled, $2), updated_at = now()"
            " WHERE id = $1 AND NOT ($2 = ANY(unfilled))",
            incident_id,
            agency,
        )

    async def reoffer(self, conn: asyncpg.Connection, incident_id: int, *, actor: str) -> None:
        """Offer the incident's open slots to the next units that have not turned it down.

        After ``max_offers`` refusals, or with no candidate left, operators are alerted
        (escalation) and the incident waits in the queue.
        """
        facts = await self.load_facts(conn, incident_id)
        if facts is None:
            return
        failed = await self.failed_offers(conn, incident_id)
        verdict = after_refusals(failed, self.rules.max_offers)
        if verdict is None:
            filled = await self.fill(conn, facts, actor=actor)
            # An escalation the offer had answered holds again now that it was refused.
            verdict = filled.verdict
        if verdict.wait_reason is not None:
            await self.wait(conn, incident_id, actor=actor, reason=verdict.wait_reason)
        if verdict.escalate_reason is not None:
            await self.escalate(conn, incident_id, actor=actor, reason=verdict.escalate_reason)

    async def refusals(self, conn: asyncpg.Connection, incident_id: int) -> frozenset[str]:
        """Units not to offer this incident to again: they declined, let the offer
        expire, or an operator took it off them."""
        rows = await conn.fetch(
            "SELECT unit_id FROM assignments WHERE incident_id = $1"
            " AND status IN ('declined', 'expired', 'cancelled')",
            incident_id,
        )
        return frozenset(r["unit_id"] for r in rows)

    async def failed_offers(self, conn: asyncpg.Connection, incident_id: int) -> int:
        """Offers of this incident that units declined or let expire."""
        count: int = await conn.fetchval(
            "SELECT count(*) FROM assignments WHERE incident_id = $1"
            " AND status IN ('declined', 'expired')",
            incident_id,
        )
        return count

    async def wait(
        self, conn: asyncpg.Connection, incident_id: int, *, actor: str, reason: str
    ) -> str:
        """Record that the incident waits for units (queued if it has none at all)."""
        row = await conn.fetchrow(
            "UPDATE incidents SET updated_at = now(), waiting_reason = $2,"
            " status = CASE WHEN EXISTS"
            " (SELECT 1 FROM assignments WHERE incident_id = $1"
            " AND status IN ('offered', 'accepted')) THEN status ELSE 'queued' END"
            " WHERE id = $1 RETURNING status, unfilled",
            incident_id,
            reason,
        )
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_QUEUED,
            actor=actor,
            incident_id=incident_id,
            data={
                "incident_status": row["status"],
                "reason": reason,
                "waiting_for": row["unfilled"],
            },
        )
        status: str = row["status"]
        return status

    async def escalate(
        self, conn: asyncpg.Connection, incident_id: int, *, actor: str, reason: str
    ) -> None:
        """Flag the incident for operators' attention, with the reason: once per reason
        (a new reason is news to operators; the same one again is not)."""
        first = await conn.fetchval(
            "UPDATE incidents SET escalated = true, escalation_reason = $2, updated_at = now()"
            " WHERE id = $1 AND (NOT escalated OR escalation_reason IS DISTINCT FROM $2)"
            " RETURNING id",
            incident_id,
            reason,
        )
        if first is None:
            return
        await append_event(
            conn,
            self._schema,
            EventType.INCIDENT_ESCALATED,
            actor=actor,
            incident_id=incident_id,
            data={"reason": reason},
        )

    async def load_facts(self, conn: asyncpg.Connection, incident_id: int) -> IncidentFacts | None:
        """The dispatch facts of a locatable incident, or None if it has no location."""
        row = await conn.fetchrow(
            "SELECT id, type, lat, lon, zone_id, status,"
            " extract(epoch FROM now() - created_at)::float8 AS waited"
            " FROM incidents WHERE id = $1",
            incident_id,
        )
        if row is None or row["lat"] is None or row["status"] in ("closed", "merged"):
            return None
        return IncidentFacts(
            row["id"],
            self.incident_type(row["type"]),
            GeoPoint(lat=row["lat"], lon=row["lon"]),
            row["zone_id"],
            row["waited"],
        )

    async def unit_status_event(
        self,
        conn: asyncpg.Connection,
        unit_id: str,
        old: str,
        new: str,
        actor: str,
        *,
        assignment_id: int | None = None,
        incident_id: int | None = None,
        **extra: Any,
    ) -> None:
        """Record a unit's status change."""
        data: dict[str, Any] = {"from": old, "to": new, **extra}
        if assignment_id is not None:
            data["assignment_id"] = assignment_id
        await append_event(
            conn,
            self._schema,
            EventType.UNIT_STATUS_CHANGED,
            actor=actor,
            unit_id=unit_id,
            incident_id=incident_id,
            data=data,
        )

"""Offers: fill an incident's plan with the best available units.

The shell around dispatch.core: it reads the snapshot (the incident's open slots and
refusals; the fleet, each unit where its newest fix puts it: dispatch.fleet), asks the
core what to do (decide_fill, the plan's verdicts) and applies it (claims and offers:
dispatch.offer_rows; pre-emption: dispatch.preempt; state: dispatch.incident_log). A
crew's answers and reports are dispatch.crew's.

Claiming is a conditional UPDATE (``... WHERE status = 'available'``) inside the
caller's transaction: when two transactions race for one unit, the second blocks on the
row lock, re-checks the condition after the first commits, finds the unit taken and
moves on to its next candidate. PostgreSQL, not Redis, decides who wins.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from dispatch import incident_log
from dispatch.core import place
from dispatch.core.decide import Decision, SlotDecision, decide_fill, decide_slot
from dispatch.core.facts import (
    IncidentFacts,
    Need,
    PlanSnapshot,
    Rules,
    TravelModel,
    UnitSnapshot,
)
from dispatch.core.plans import (
    Verdict,
    after_fill,
    after_refusals,
    slots_in_order,
)
from dispatch.core.rank import (
    Candidate,
    Policy,
    closest_idle,
    manual,
    need_of,
)
from dispatch.crew import Crew
from dispatch.errors import InvalidTransition, NotFound, UnknownIncidentType
from dispatch.fleet import Fleet
from dispatch.incident_types import IncidentType
from dispatch.metrics import Metrics
from dispatch.offer_rows import Offer, claim_and_offer
from dispatch.posts import CoveragePosts
from dispatch.preempt import preempt
from dispatch.unit_index import UnitIndex
from dispatch.zonestore import ZoneDirectory
from geo.location import Location
from geo.points import GeoPoint
from geo.zones import Zone, ZoneIndex


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


class Dispatcher:
    """Finds, claims and offers units; applies MDT answers (through its Crew). Runs in
    callers' transactions."""

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
        self.rules = Rules(
            max_offers=max_offers,
            preempt_priority=preempt_priority,
            position_stale_s=position_stale_s,
            response_target_s=response_target_s,
            zone_targets_s=dict(zone_targets_s or {}),
        )
        self.fleet = Fleet(
            zones=zones, rules=self.rules, travel=travel, policy=policy, unit_index=unit_index
        )
        self.crew = Crew(schema=schema, dispatcher=self, posts=posts)

    async def available_units(
        self,
        conn: asyncpg.Connection,
        *,
        agency: str | None = None,
        among: list[str] | None = None,
        stale: bool = False,
    ) -> list[UnitSnapshot]:
        """Available units with a known and recent position (``Fleet.available_units``)."""
        return await self.fleet.available_units(conn, agency=agency, among=among, stale=stale)

    async def respond(
        self, conn: asyncpg.Connection, *, unit_id: str, assignment_id: int, accept: bool
    ) -> dict[str, Any]:
        """Apply an MDT's accept or decline (``Crew.respond``)."""
        return await self.crew.respond(
            conn, unit_id=unit_id, assignment_id=assignment_id, accept=accept
        )

    async def report_status(
        self, conn: asyncpg.Connection, *, unit_id: str, status: str, actor: str
    ) -> dict[str, Any]:
        """Apply a crew's status report (``Crew.report_status``)."""
        return await self.crew.report_status(conn, unit_id=unit_id, status=status, actor=actor)

    @property
    def schema(self) -> str:
        """The PostgreSQL schema this dispatcher writes to."""
        return self._schema

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
        return self.neighbour_zones(incident.zone_id)

    def neighbour_zones(self, zone_id: str | None) -> frozenset[str]:
        """The zones bordering ``zone_id`` (none for no zone)."""
        return frozenset(self.zones.neighbours(zone_id) if zone_id else ())

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
            refused = await incident_log.refusals(conn, incident.id)
        nearest: dict[str, set[str]] = {}  # per agency, when only its nearest were read
        if units is None:
            units = []
            for agency in slots_in_order(incident.type.plan, unfilled):
                found, ids = await self.fleet.candidates(conn, incident, agency)
                units += found
                if ids is not None:
                    nearest[agency] = ids
        snapshot = PlanSnapshot(
            incident, unfilled, tuple(units), refused, self._neighbours(incident), time.time()
        )
        decision = decide_fill(snapshot, self._policy, self._travel, self.rules)
        return await self.apply(conn, snapshot, decision, actor=actor, nearest=nearest)

    async def apply(
        self,
        conn: asyncpg.Connection,
        snapshot: PlanSnapshot,
        decision: Decision,
        *,
        actor: str,
        nearest: Mapping[str, set[str]] | None = None,
    ) -> Filled:
        """Carry out the core's decision for an incident: claim each slot's candidates in
        order; where ``nearest`` says only an agency's nearest units were read and none
        could go, decide again over the rest of it; pre-empt where the decision allows.
        Returns the offers made, and the agencies held or still without a unit (why)."""
        incident, refused = snapshot.incident, snapshot.refused
        nearest = nearest or {}
        filled = Filled([], [], [])
        for slot in decision.slots:
            offer = await self._claim_first(conn, incident, slot, actor)
            held, why = slot.held, slot.why
            if offer is None and slot.agency in nearest:
                # None of the nearest could go: the rest of the agency's fleet.
                rest = await self.fleet.available_units(conn, agency=slot.agency, stale=True)
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
                offer = await preempt(self, conn, incident, slot.need, actor=actor, exclude=refused)
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

    async def _claim_first(
        self, conn: asyncpg.Connection, incident: IncidentFacts, slot: SlotDecision, actor: str
    ) -> Offer | None:
        """Offer the slot to its first candidate whose claim wins (another instance may
        have taken the better ones since the snapshot was read)."""
        for candidate in slot.ranked:
            offer = await self.claim_and_offer(conn, incident, candidate, slot.agency, actor=actor)
            if offer is not None:
                return offer
        return None

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
        position = GeoPoint(lat=row["lat"], lon=row["lon"]) if row["lat"] is not None else None
        candidate = manual(incident, unit_id, position, self._travel)
        offer = await self.claim_and_offer(
            conn, incident, candidate, row["agency"], actor=actor, reason=reason
        )
        if offer is None:
            raise InvalidTransition("unit", unit_id, row["status"], "offered")
        return offer

    async def claim_and_offer(
        self,
        conn: asyncpg.Connection,
        incident: IncidentFacts,
        candidate: Candidate,
        agency: str,
        *,
        actor: str,
        reason: str | None = None,
    ) -> Offer | None:
        """Claim the candidate and offer it the slot; None if another transaction took
        the unit first."""
        return await claim_and_offer(
            conn,
            self._schema,
            incident,
            candidate,
            agency,
            actor=actor,
            timeout_s=self._offer_timeout_s,
            metrics=self.metrics,
            reason=reason,
        )

    async def reoffer(self, conn: asyncpg.Connection, incident_id: int, *, actor: str) -> None:
        """Offer the incident's open slots to the next units that have not turned it down.

        After ``max_offers`` refusals, or with no candidate left, operators are alerted
        (escalation) and the incident waits in the queue.
        """
        facts = await self.load_facts(conn, incident_id)
        if facts is None:
            return
        failed = await incident_log.failed_offers(conn, incident_id)
        verdict = after_refusals(failed, self.rules.max_offers)
        if verdict is None:
            filled = await self.fill(conn, facts, actor=actor)
            # An escalation the offer had answered holds again now that it was refused.
            verdict = filled.verdict
        if verdict.wait_reason is not None:
            await incident_log.wait(
                conn,
                self._schema,
                incident_id,
                actor=actor,
                reason=verdict.wait_reason,
                escalation=verdict.escalate_reason,
            )
        elif verdict.escalate_reason is not None:
            await incident_log.escalate(
                conn, self._schema, incident_id, actor=actor, reason=verdict.escalate_reason
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

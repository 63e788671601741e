"""The pure dispatch core, without PostgreSQL or Redis: random incidents, units, pings,
answers, expiries and crew reports fed through dispatch.core's functions, applied to a
model world by this test (as the shell would apply them).

Safety, checked on every decision and after every step: never two units on one slot of
a plan, never one unit on two jobs, never a unit offered an incident it refused (or a
busy, stale, incapable or wrong-agency unit). Liveness: an open slot of an incident with
a free, capable, reachable, fresh unit that did not refuse it gets an offer, and the
best one by this test's own ranking (closest-idle never holds); a legal answer or crew
report is applied, an illegal one refused."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from dispatch.core.decide import Decision, decide_fill
from dispatch.core.facts import IncidentFacts, PlanSnapshot, Rules, TravelModel, UnitSnapshot
from dispatch.core.lifecycle import (
    UNIT_STATUSES,
    CrewChange,
    OfferAnswer,
    Refused,
    answer_offer,
    crew_report,
)
from dispatch.core.rank import closest_idle
from dispatch.incident_types import IncidentType, load_incident_types
from geo.distance import distance_m
from geo.points import GeoPoint
from tests.crew_rule import CREW_MAY

TYPES = load_incident_types()
ZONES = ("z0", "z1", "z2", "z3", "z4")
# A row of zones, each touching the next: z0-z1-z2-z3-z4.
NEIGHBOURS = {
    z: frozenset(ZONES[j] for j in (i - 1, i + 1) if 0 <= j < 5) for i, z in enumerate(ZONES)
}
CENTRE = GeoPoint(lat=20.30, lon=85.82)
TRAVEL = TravelModel()
RULES = Rules(position_stale_s=600.0)
LIVE = ("offered", "accepted")

zones = st.none() | st.sampled_from(ZONES)
points = st.builds(
    lambda dlat, dlon: GeoPoint(lat=CENTRE.lat + dlat, lon=CENTRE.lon + dlon),
    st.floats(-0.2, 0.2),
    st.floats(-0.2, 0.2),
)


@dataclass
class Unit:
    id: str
    agency: str
    zone: str | None
    position: GeoPoint
    position_at: float
    capabilities: frozenset[str]
    status: str = "available"

    def snapshot(self) -> UnitSnapshot:
        return UnitSnapshot(
            self.id,
            self.agency,
            self.zone,
            self.position,
            self.capabilities,
            position_at=self.position_at,
            status=self.status,
        )


@dataclass
class Incident:
    facts: IncidentFacts
    unfilled: list[str]
    refused: set[str] = field(default_factory=set)


@dataclass
class Assignment:
    id: int
    incident: int
    unit: str
    agency: str
    status: str = "offered"
    late: bool = False


def expected_best(incident: Incident, agency: str, units: list[Unit], now: float) -> Unit | None:
    """This test's own closest-idle: the free, capable, fresh, reachable unit that did not
    refuse, by driving time plus the zone tier's handicap (ties by id)."""
    facts = incident.facts
    best: tuple[float, str, Unit] | None = None
    for u in units:
        if (
            u.status != "available"
            or u.agency != agency
            or u.id in incident.refused
            or not facts.type.needs_of(agency) <= u.capabilities
            or u.position_at <= now - 600.0
        ):
            continue
        metres = distance_m(facts.point, u.position)
        if facts.zone_id is not None and u.zone == facts.zone_id:
            tier = 0
        elif (
            u.zone is not None and facts.zone_id is not None and u.zone in NEIGHBOURS[facts.zone_id]
        ):
            tier = 1
        elif metres <= TRAVEL.max_radius_m:
            tier = 2
        else:
            continue
        score = metres * TRAVEL.road_factor / (TRAVEL.speed_kmh / 3.6) + tier * TRAVEL.zone_slack_s
        if best is None or (score, u.id) < best[:2]:
            best = (score, u.id, u)
    return best[2] if best is not None else None


class CoreWorld(RuleBasedStateMachine):
    """A model world driven only through dispatch.core."""

    applied: ClassVar[Counter[str]] = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000_000.0
        self.units: dict[str, Unit] = {}
        self.incidents: dict[int, Incident] = {}
        self.assignments: list[Assignment] = []
        self.violations: list[str] = []

    # -- the world ----------------------------------------------------------------

    @rule(
        agency=st.sampled_from(["police", "police", "ambulance", "fire"]),
        zone=st.none() | st.sampled_from(ZONES),
        point=points,
        age=st.floats(0, 900),
        woman=st.booleans(),
    )
    def add_unit(
        self, agency: str, zone: str | None, point: GeoPoint, age: float, woman: bool
    ) -> None:
        unit_id = f"u{len(self.units)}"
        caps = frozenset({"woman_officer"}) if woman else frozenset()
        self.units[unit_id] = Unit(unit_id, agency, zone, point, self.now - age, caps)

    @precondition(lambda self: self.units)
    @rule(data=st.data(), point=points, zone=st.none() | st.sampled_from(ZONES))
    def ping(self, data: Any, point: GeoPoint, zone: str | None) -> None:
        """An MDT's fix: where the unit is now."""
        unit = self.units[data.draw(st.sampled_from(sorted(self.units)))]
        unit.position, unit.position_at, unit.zone = point, self.now, zone

    @rule(seconds=st.floats(0, 400))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(
        kind=st.sampled_from(sorted(TYPES)), point=points, zone=st.none() | st.sampled_from(ZONES)
    )
    def report(self, kind: str, point: GeoPoint, zone: str | None) -> None:
        incident_id = len(self.incidents) + 1
        facts = IncidentFacts(incident_id, TYPES[kind], point, zone)
        self.incidents[incident_id] = Incident(facts, list(TYPES[kind].plan))
        self.fill(incident_id)

    @precondition(lambda self: self.incidents)
    @rule(data=st.data())
    def sweep(self, data: Any) -> None:
        """The queue (or a re-offer) serves an incident again."""
        self.fill(data.draw(st.sampled_from(sorted(self.incidents))))

    def fill(self, incident_id: int) -> None:
        incident = self.incidents[incident_id]
        snapshot = PlanSnapshot(
            incident.facts,
            tuple(incident.unfilled),
            tuple(u.snapshot() for u in self.units.values()),
            frozenset(incident.refused),
            NEIGHBOURS.get(incident.facts.zone_id or "", frozenset()),
            self.now,
        )
        decision = decide_fill(snapshot, closest_idle, TRAVEL, RULES)
        self.check_decision(incident, decision)
        for slot in decision.slots:
            if slot.first is None:
                continue
            unit = self.units[slot.first.unit_id]
            # The shell's conditional claim: only an available unit is taken.
            if unit.status != "available":
                self.violations.append(f"claimed {unit.id} while {unit.status}")
                continue
            if unit.id in incident.refused:
                self.violations.append(f"{unit.id} offered incident {incident_id} it refused")
            unit.status = "offered"
            incident.unfilled.remove(slot.agency)
            self.assignments.append(
                Assignment(len(self.assignments) + 1, incident_id, unit.id, slot.agency)
            )
            self.applied["offer"] += 1

    def check_decision(self, incident: Incident, decision: Decision) -> None:
        assert [s.agency for s in decision.slots] == [
            a for a in incident.facts.type.plan if a in incident.unfilled
        ], "only the open slots, in the plan's order"
        firsts = [s.first.unit_id for s in decision.slots if s.first is not None]
        assert len(firsts) == len(set(firsts)), f"one unit for two slots: {firsts}"
        for slot in decision.slots:
            for candidate in slot.ranked:
                unit = self.units[candidate.unit_id]
                assert unit.id not in incident.refused, f"refused {unit.id} offered again"
                assert unit.status == "available", f"{unit.id} is {unit.status}"
                assert unit.agency == slot.agency
                assert incident.facts.type.needs_of(slot.agency) <= unit.capabilities
                assert unit.position_at > self.now - 600.0, f"{unit.id}'s position is stale"
            best = expected_best(incident, slot.agency, list(self.units.values()), self.now)
            assert not slot.held, "closest-idle never holds"
            if best is None:
                assert slot.first is None, f"{slot.first} is not a candidate"
            else:
                assert slot.first is not None, f"{best.id} could go, nobody was offered"
                assert slot.first.unit_id == best.id, f"{slot.first.unit_id} before {best.id}"

    # -- answers and reports --------------------------------------------------------

    # Two rules, not one with a boolean: Hypothesis leans to the simplest value of a
    # draw (False), and whole runs went by without a single accept.
    @precondition(lambda self: self.assignments)
    @rule(data=st.data(), late=st.sampled_from([False, False, True]))
    def accept(self, data: Any, late: bool) -> None:
        """An MDT accepts an offer."""
        self.answer(data, accept=True, late=late)

    @precondition(lambda self: self.assignments)
    @rule(data=st.data(), late=st.sampled_from([False, False, True]))
    def decline(self, data: Any, late: bool) -> None:
        """An MDT declines an offer."""
        self.answer(data, accept=False, late=late)

    def answer(self, data: Any, *, accept: bool, late: bool) -> None:
        """An MDT answers an offer, mostly an open one, sometimes one already answered."""
        offered = [a for a in self.assignments if a.status == "offered"]
        a = data.draw(st.sampled_from(offered or self.assignments))
        result = answer_offer(a.id, a.status, late=late, accept=accept)
        if a.status == "offered" and not late:
            assert isinstance(result, OfferAnswer), f"legal answer refused: {result}"
            assert result.assignment_status == ("accepted" if accept else "declined")
            assert result.unit_status == ("dispatched" if accept else "available")
            self.applied["accept" if accept else "decline"] += 1
            a.status = result.assignment_status
            self.units[a.unit].status = result.unit_status
            if result.reoffer:
                self.refuse(a)
                self.fill(a.incident)
        else:
            assert isinstance(result, Refused), f"illegal answer applied: {result}"
            # Late: past the deadline, or already swept to expired.
            assert result.expired == ((a.status == "offered" and late) or a.status == "expired")

    @precondition(lambda self: any(a.status == "offered" for a in self.assignments))
    @rule(data=st.data())
    def expire(self, data: Any) -> None:
        a = data.draw(st.sampled_from([a for a in self.assignments if a.status == "offered"]))
        a.status = "expired"
        self.units[a.unit].status = "available"
        self.refuse(a)
        self.fill(a.incident)

    def refuse(self, a: Assignment) -> None:
        incident = self.incidents[a.incident]
        incident.refused.add(a.unit)
        incident.unfilled.append(a.agency)

    @precondition(lambda self: self.units)
    @rule(data=st.data(), wanted=st.sampled_from([*UNIT_STATUSES, "flying"]))
    def crew(self, data: Any, wanted: str) -> None:
        unit = self.units[data.draw(st.sampled_from(sorted(self.units)))]
        result = crew_report(unit.id, unit.status, wanted)
        if wanted in CREW_MAY[unit.status]:
            assert isinstance(result, CrewChange), f"legal report refused: {result}"
            assert result.unit_status == wanted
            self.applied["crew"] += 1
            unit.status = wanted
            job = [a for a in self.assignments if a.unit == unit.id and a.status == "accepted"]
            if job and result.ends_assignment:
                job[0].status = "completed"
        else:
            assert isinstance(result, Refused), f"illegal report applied: {unit.status}->{wanted}"

    # -- invariants -----------------------------------------------------------------

    @invariant()
    def safety(self) -> None:
        assert not self.violations, self.violations
        live = [a for a in self.assignments if a.status in LIVE]
        slots = Counter((a.incident, a.agency) for a in live)
        assert max(slots.values(), default=0) <= 1, f"two units on one slot: {slots}"
        jobs = Counter(a.unit for a in live)
        assert max(jobs.values(), default=0) <= 1, f"a unit on two jobs: {jobs}"
        for a in live:
            assert a.agency not in self.incidents[a.incident].unfilled
            if a.status == "offered":
                assert self.units[a.unit].status == "offered"


CoreWorld.TestCase.settings = hypothesis_settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestCoreWorld = CoreWorld.TestCase


def test_every_kind_of_command_is_applied() -> None:
    """The machine's rules are not all refusals: a run applies every kind of command.

    Its own run, derandomised, rather than whatever the random run above happened to
    draw (with accept and decline as one rule's boolean, a whole-suite run drew 19
    declines and no accept, every seed alike); it fails the day one kind never is.
    """
    CoreWorld.applied.clear()
    run_state_machine_as_test(
        CoreWorld,
        settings=hypothesis_settings(
            max_examples=150, stateful_step_count=40, deadline=None, derandomize=True
        ),
    )
    assert {"offer", "accept", "decline", "crew"} <= set(CoreWorld.applied), CoreWorld.applied


def test_offers_are_exact_under_float_ties() -> None:
    """Two units at the same place: the lower id goes first, on every instance."""
    point = CENTRE
    kind = TYPES["panic"]
    units = tuple(UnitSnapshot(uid, "police", "z0", point, position_at=0.0) for uid in ("b", "a"))
    snapshot = PlanSnapshot(
        IncidentFacts(1, kind, point, "z0"), ("police",), units, frozenset(), frozenset(), 1.0
    )
    decision = decide_fill(snapshot, closest_idle, TRAVEL, RULES)
    assert decision.offers == {"police": "a"}
    assert math.isclose(decision.slots[0].ranked[0].distance_m, 0.0, abs_tol=1e-6)


def test_one_unit_is_never_first_for_two_slots() -> None:
    """A plan asking two units of one agency (a riot: two police vans) gets two units;
    the shipped plans list distinct agencies, so this one is built here."""
    riot = IncidentType("riot", "Riot", 1, ("police", "police"))
    units = tuple(UnitSnapshot(uid, "police", "z0", CENTRE, position_at=0.0) for uid in ("a", "b"))
    snapshot = PlanSnapshot(
        IncidentFacts(1, riot, CENTRE, "z0"),
        ("police", "police"),
        units,
        frozenset(),
        frozenset(),
        1.0,
    )
    decision = decide_fill(snapshot, closest_idle, TRAVEL, RULES)
    assert [s.first.unit_id if s.first else None for s in decision.slots] == ["a", "b"]

"""Random legal and illegal commands against the engine on real PostgreSQL; after every
step the dispatch invariants hold (hypothesis stateful testing).

A refusal is not simply swallowed: an MDT's answer is predicted legal or illegal from
the assignment row before it is sent, and must be applied (with its state change) or
refused accordingly; and every kind of command must have been applied some of the time
over the run, so an engine that refuses everything fails."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from dispatch.control import Control
from dispatch.core.lifecycle import (
    UNIT_STATUSES,
    CrewChange,
    OfferAnswer,
    OfferExpired,
    Refused,
    answer_offer,
    check_crew_transition,
    crew_report,
)
from dispatch.db import create_pool, migrate
from dispatch.demo import demo_zones, load_demo, point_inside
from dispatch.engine import TravelModel
from dispatch.errors import DispatchError, InvalidTransition
from dispatch.expiry import OfferExpiry
from dispatch.incident_types import load_incident_types
from dispatch.intake import Intake
from dispatch.offers import Dispatcher
from dispatch.queue import QueueWorker
from dispatch.reports import IncidentReport
from dispatch.settings import Settings
from dispatch.zonestore import ZoneDirectory
from geo.location import Location
from geo.zones import ZoneIndex
from tests.crew_rule import CREW_MAY

T = TypeVar("T")
ZONES = demo_zones()
TYPES = ["panic", "medical", "accident_injuries", "other"]


class DispatchMachine(RuleBasedStateMachine):
    """Drives intake, MDT answers, crew reports, operator actions, expiry and queue."""

    settings_: Settings
    # Commands applied (not refused), by kind, over the whole run.
    applied: ClassVar[Counter[str]] = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.n = 0

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    @initialize()
    def setup(self) -> None:
        self.pool: asyncpg.Pool = self.run(self._setup())

    async def _setup(self) -> asyncpg.Pool:
        s = self.settings_
        assert s.database_url
        pool = await create_pool(s.database_url, s.db_schema, min_size=1, max_size=2)
        async with pool.acquire() as conn:
            await migrate(conn, s.db_schema)
            await conn.execute(
                "TRUNCATE report_keys, reports, assignments, events, incidents,"
                " idempotency_keys, unit_track CASCADE"
            )
            await load_demo(conn, base_url="")
            await conn.execute("UPDATE units SET status = 'available'")
        zones = ZoneDirectory(ZoneIndex(ZONES))
        self.dispatcher = Dispatcher(
            schema=s.db_schema,
            zones=zones,
            incident_types=load_incident_types(),
            travel=TravelModel(),
            offer_timeout_s=30,
            max_offers=2,
        )
        self.intake = Intake(pool=pool, schema=s.db_schema, dispatcher=self.dispatcher)
        self.control = Control(schema=s.db_schema, dispatcher=self.dispatcher)
        self.expiry = OfferExpiry(
            pool=pool, schema=s.db_schema, dispatcher=self.dispatcher, poll_s=1
        )
        self.queue = QueueWorker(pool=pool, dispatcher=self.dispatcher, poll_s=1)
        return pool

    def teardown(self) -> None:
        if hasattr(self, "pool"):
            self.run(self.pool.close())
        self.loop.close()

    async def _tx(
        self,
        kind: str,
        action: Callable[[asyncpg.Connection], Awaitable[Any]],
        *,
        legal: bool | None = None,
    ) -> bool:
        """Run one command in a transaction; True when it was applied. An illegal
        command is refused with DispatchError and its rollback changes nothing (the
        invariants check the rest). ``legal`` is the model's prediction, when it has one:
        a legal command must be applied, an illegal one refused."""
        refused: DispatchError | None = None
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await action(conn)
        except DispatchError as err:
            refused = err
        if refused is not None:
            assert legal is not True, f"{kind}: a legal command was refused: {refused!r}"
            return False
        assert legal is not False, f"{kind}: an illegal command was applied"
        self.applied[kind] += 1
        return True

    async def _pick(self, sql: str, seed: int) -> Any:
        rows = await self.pool.fetch(sql)
        return random.Random(seed).choice(rows)[0] if rows else None

    @rule(zone=st.integers(0, len(ZONES) - 1), kind=st.sampled_from(TYPES), seed=st.integers())
    def report(self, zone: int, kind: str, seed: int) -> None:
        self.n += 1
        point = point_inside(ZONES[zone], random.Random(seed))
        report = IncidentReport(
            channel="panic",
            gateway_id="panic",
            external_id=f"r{self.n}",
            sender=f"d{self.n}",
            incident_type=kind,
            location=Location(point=point, radius_m=10.0, method="gps"),
            payload={},
            sender_keys=(f"device:{self.n}",),
        )
        self.run(self.intake.submit(report, idempotency_key=f"k{self.n}", body_sha256="x"))

    @rule(accept=st.booleans(), seed=st.integers(), wrong_unit=st.booleans(), open_=st.booleans())
    def answer(self, accept: bool, seed: int, wrong_unit: bool, open_: bool) -> None:
        async def go() -> None:
            where = " WHERE status = 'offered'" if open_ else ""
            assignment = await self._pick(f"SELECT id FROM assignments{where} ORDER BY id", seed)
            if assignment is None:
                return
            row = await self.pool.fetchrow(
                "SELECT unit_id, status, expires_at <= now() AS late FROM assignments"
                " WHERE id = $1",
                assignment,
            )
            unit = row["unit_id"]
            if wrong_unit:
                unit = await self._pick("SELECT id FROM units ORDER BY id", seed)
            legal = row["status"] == "offered" and not row["late"] and unit == row["unit_id"]
            kind = "accept" if accept else "decline"
            applied = await self._tx(
                kind,
                lambda c: self.dispatcher.respond(
                    c, unit_id=unit, assignment_id=assignment, accept=accept
                ),
                legal=legal,
            )
            after = await self.pool.fetchval(
                "SELECT status FROM assignments WHERE id = $1", assignment
            )
            if not applied:
                assert after == row["status"]
                return
            assert after == ("accepted" if accept else "declined")
            unit_status = await self.pool.fetchval("SELECT status FROM units WHERE id = $1", unit)
            if accept:
                assert unit_status == "dispatched"
            else:
                assert unit_status != "dispatched"

        self.run(go())

    @rule(status=st.sampled_from(UNIT_STATUSES), seed=st.integers())
    def crew_reports(self, status: str, seed: int) -> None:
        async def go() -> None:
            unit = await self._pick("SELECT id FROM units ORDER BY id", seed)
            await self._tx(
                "crew",
                lambda c: self.dispatcher.report_status(
                    c, unit_id=unit, status=status, actor="test"
                ),
            )

        self.run(go())

    @rule(
        seed=st.integers(),
        what=st.sampled_from(["close", "cancel", "assign", "unit"]),
        open_=st.booleans(),
    )
    def operator(self, seed: int, what: str, open_: bool) -> None:
        async def go() -> None:
            where = " WHERE status NOT IN ('closed', 'merged')" if open_ else ""
            incident = await self._pick(f"SELECT id FROM incidents{where} ORDER BY id", seed)
            unit = await self._pick("SELECT id FROM units ORDER BY id", seed)
            assignment = await self._pick("SELECT id FROM assignments ORDER BY id", seed)
            if what == "close" and incident is not None:
                before = await self.pool.fetchval(
                    "SELECT status FROM incidents WHERE id = $1", incident
                )
                applied = await self._tx(
                    "close",
                    lambda c: self.control.close(c, incident, actor="op", disposition="done"),
                    legal=before not in ("closed", "merged"),
                )
                after = await self.pool.fetchval(
                    "SELECT status FROM incidents WHERE id = $1", incident
                )
                assert after == ("closed" if applied else before)
            elif what == "cancel" and assignment is not None:
                await self._tx(
                    "cancel",
                    lambda c: self.control.cancel_assignment(c, assignment, actor="op", reason="x"),
                )
            elif what == "assign" and incident is not None:
                await self._tx(
                    "assign",
                    lambda c: self.control.assign(c, incident, unit, actor="op", reason="x"),
                )
            elif what == "unit":
                await self._tx(
                    "unit",
                    lambda c: self.control.set_unit_status(
                        c, unit, actor="op", status="out_of_service", reason="x"
                    ),
                )

        self.run(go())

    @rule()
    def offers_expire(self) -> None:
        async def go() -> None:
            await self.pool.execute(
                "UPDATE assignments SET expires_at = now() WHERE status = 'offered'"
            )
            while await self.expiry.sweep_once():
                pass

        self.run(go())

    @rule()
    def queue_sweeps(self) -> None:
        self.run(self.queue.sweep_once())

    @invariant()
    def one_job_per_unit_and_statuses_agree(self) -> None:
        if not hasattr(self, "pool"):
            return

        async def check() -> None:
            double = await self.pool.fetch(
                "SELECT unit_id FROM assignments WHERE status IN ('offered', 'accepted')"
                " GROUP BY unit_id HAVING count(*) > 1"
            )
            assert double == []
            offered = await self.pool.fetch(
                "SELECT u.id, u.status, a.id FROM units u LEFT JOIN assignments a"
                " ON a.unit_id = u.id AND a.status = 'offered'"
                " WHERE (u.status = 'offered') <> (a.id IS NOT NULL)"
            )
            assert offered == []
            busy = await self.pool.fetch(
                "SELECT u.id, u.status FROM units u LEFT JOIN assignments a"
                " ON a.unit_id = u.id AND a.status = 'accepted'"
                " WHERE (u.status IN ('dispatched', 'en_route', 'on_scene')) <> (a.id IS NOT NULL)"
            )
            assert busy == []
            both = await self.pool.fetch(
                "SELECT i.id FROM incidents i JOIN assignments a ON a.incident_id = i.id"
                " AND a.status IN ('offered', 'accepted') WHERE a.agency = ANY(i.unfilled)"
            )
            assert both == []
            orphaned = await self.pool.fetch(
                "SELECT a.id FROM assignments a JOIN incidents i ON i.id = a.incident_id"
                " WHERE a.status IN ('offered', 'accepted') AND i.status IN ('closed', 'merged')"
            )
            assert orphaned == []
            first = await self.pool.fetch(
                "SELECT DISTINCT ON (incident_id) incident_id, type FROM events"
                " WHERE incident_id IS NOT NULL ORDER BY incident_id, id"
            )
            assert all(r["type"] == "incident.created" for r in first)

        self.run(check())


def test_dispatch_invariants_hold_under_random_commands(settings: Settings) -> None:
    DispatchMachine.settings_ = settings
    DispatchMachine.applied = Counter()
    run_state_machine_as_test(
        DispatchMachine,
        settings=hypothesis_settings(
            max_examples=12,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    # Some commands were applied: a run of refusals proves nothing.
    assert sum(DispatchMachine.applied.values()) > 0, DispatchMachine.applied


@pytest.mark.parametrize("current", UNIT_STATUSES)
def test_crew_transitions_are_the_documented_ones(current: str) -> None:
    """Every (from, to) pair, against the documented table: allowed ones pass, the
    rest raise InvalidTransition, and so does a status that does not exist."""
    assert set(CREW_MAY) == set(UNIT_STATUSES)
    for wanted in [*UNIT_STATUSES, "teleported"]:
        if wanted in CREW_MAY[current]:
            check_crew_transition("u1", current, wanted)
        else:
            with pytest.raises(InvalidTransition) as caught:
                check_crew_transition("u1", current, wanted)
            refused = caught.value
            assert (refused.what, refused.ident, refused.current, refused.wanted) == (
                "unit",
                "u1",
                current,
                wanted,
            )


def test_a_crew_report_from_an_unknown_status_is_refused() -> None:
    with pytest.raises(InvalidTransition) as caught:
        check_crew_transition("u1", "teleported", "available")
    assert (caught.value.current, caught.value.wanted) == ("teleported", "available")


# The pure decisions, against the test's own table of what each report does (the
# incident follows its unit to the scene, only forward; a job ends when the crew is
# returning or available).
INCIDENT_FOLLOWS = {"en_route": "dispatched", "on_scene": "on_scene"}
MOVES_FROM = {
    "dispatched": ("new", "queued", "offered"),
    "on_scene": ("new", "queued", "offered", "dispatched"),
}


@pytest.mark.parametrize("current", UNIT_STATUSES)
def test_a_crew_report_says_what_it_moves(current: str) -> None:
    for wanted in [*UNIT_STATUSES, "teleported"]:
        change = crew_report("u1", current, wanted)
        if wanted not in CREW_MAY[current]:
            assert change == Refused("unit", "u1", current, wanted)
            continue
        follows = INCIDENT_FOLLOWS.get(wanted)
        assert change == CrewChange(
            unit_status=wanted,
            incident_status=follows,
            incident_moves_from=MOVES_FROM.get(follows or "", ()),
            ends_assignment=wanted in ("returning", "available"),
        )


@pytest.mark.parametrize("accept", [True, False])
def test_an_offer_answer_says_what_it_moves(accept: bool) -> None:
    wanted = "accepted" if accept else "declined"
    taken = answer_offer(7, "offered", late=False, accept=accept)
    if accept:
        assert taken == OfferAnswer("accepted", "dispatched", "dispatched", reoffer=False)
    else:
        assert taken == OfferAnswer("declined", "available", None, reoffer=True)
    for status in ("accepted", "declined", "cancelled"):
        refused = answer_offer(7, status, late=False, accept=accept)
        assert refused == Refused("assignment", 7, status, wanted)
        assert refused.error().__class__ is InvalidTransition
    # Swept already: as late as an offer past its deadline (OfferExpired, documented).
    swept = answer_offer(7, "expired", late=False, accept=accept)
    assert swept == Refused("assignment", 7, "expired", wanted, expired=True)
    assert isinstance(swept.error(), OfferExpired)
    late = answer_offer(7, "offered", late=True, accept=accept)
    assert late == Refused("assignment", 7, "expired", wanted, expired=True)
    error = late.error()
    assert isinstance(error, OfferExpired)
    assert (error.what, error.ident, error.current, error.wanted) == (
        "assignment",
        7,
        "expired",
        wanted,
    )

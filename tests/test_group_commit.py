"""Group commit against real PostgreSQL: reports arriving together share a transaction,
each in its own savepoint with its own answer; one that fails costs only itself; a
group whose transaction fails is run again report by report; a lone one goes at once."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from dispatch.group_commit import GroupCommit
from dispatch.settings import Settings
from tests.conftest import LiveServer, wait_for
from tests.test_walking_skeleton import panic, zone_point


@pytest.fixture
async def settings(settings: Settings) -> Settings:
    # The live server of the burst test runs with group commit on (off by default).
    return settings.model_copy(update={"intake_group_commit": True})


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    schema = settings.db_schema
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await admin.close()
    created = await asyncpg.create_pool(
        settings.database_url, min_size=1, max_size=4, server_settings={"search_path": schema}
    )
    assert created is not None
    await created.execute(
        "CREATE TABLE t (n int PRIMARY KEY,"
        " tag text UNIQUE DEFERRABLE INITIALLY DEFERRED)"  # checked at COMMIT
    )
    yield created
    await created.close()


def _insert(n: int, tag: str | None = None) -> Any:
    async def work(conn: asyncpg.Connection) -> int:
        await conn.execute("INSERT INTO t (n, tag) VALUES ($1, $2)", n, tag)
        return n

    return work


class _Sizes:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, size: int) -> None:
        self.seen.append(size)


async def test_a_lone_report_goes_at_once_in_its_own_transaction(pool: asyncpg.Pool) -> None:
    sizes = _Sizes()
    group = GroupCommit(pool, observe=sizes)
    assert await group.run(_insert(1)) == 1
    assert sizes.seen == [1]
    assert await pool.fetchval("SELECT count(*) FROM t") == 1


async def test_reports_arriving_together_share_a_transaction_and_keep_their_answers(
    pool: asyncpg.Pool,
) -> None:
    sizes = _Sizes()
    group = GroupCommit(pool, max_running=1, observe=sizes)

    async def bad(conn: asyncpg.Connection) -> int:
        await conn.execute("INSERT INTO t (n) VALUES (100)")
        raise ValueError("a bug in one report")

    works = [_insert(n) for n in range(10)] + [bad] + [_insert(n) for n in range(10, 20)]
    outcomes = await asyncio.gather(*(group.run(w) for w in works), return_exceptions=True)
    assert outcomes[:10] == list(range(10))
    assert isinstance(outcomes[10], ValueError)
    assert outcomes[11:] == list(range(10, 20))
    # The failing report's own write was undone with its savepoint; the others stand.
    rows = [r["n"] for r in await pool.fetch("SELECT n FROM t ORDER BY n")]
    assert rows == list(range(20))
    # The first went alone (nothing was running); the rest arrived while it ran and
    # went together.
    assert sizes.seen[0] == 1
    assert max(sizes.seen) > 1
    assert sum(sizes.seen) == 20  # the failed one committed nothing


async def test_a_group_whose_commit_fails_is_run_again_report_by_report(
    pool: asyncpg.Pool,
) -> None:
    """Two reports clash only at COMMIT (a deferred unique constraint): nothing of the
    group was written, so each runs alone: the first commits, the clash is the second's
    own error, and the unrelated ones commit."""
    sizes = _Sizes()
    group = GroupCommit(pool, max_running=1, observe=sizes)
    works = [_insert(0), _insert(1, "same"), _insert(2), _insert(3, "same"), _insert(4)]
    outcomes = await asyncio.gather(*(group.run(w) for w in works), return_exceptions=True)
    assert outcomes[:3] == [0, 1, 2]
    assert isinstance(outcomes[3], asyncpg.UniqueViolationError)
    assert outcomes[4] == 4
    rows = [r["n"] for r in await pool.fetch("SELECT n FROM t ORDER BY n")]
    assert rows == [0, 1, 2, 4]
    assert all(size == 1 for size in sizes.seen[1:])  # after the failed group: one by one


async def test_a_report_that_deadlocked_in_a_group_runs_again_alone(pool: asyncpg.Pool) -> None:
    """PostgreSQL aborted the report's statement (a deadlock with another group): it is
    not the report's fault, so it is run again on its own, not answered with the error."""
    group = GroupCommit(pool, max_running=1)
    tries = 0

    async def unlucky(conn: asyncpg.Connection) -> str:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        await conn.execute("INSERT INTO t (n) VALUES (50)")
        return "written"

    outcomes = await asyncio.gather(
        group.run(_insert(1)), group.run(_insert(2)), group.run(unlucky)
    )
    assert outcomes == [1, 2, "written"]
    assert tries == 2
    assert await pool.fetchval("SELECT count(*) FROM t") == 3


async def test_a_burst_of_panics_is_grouped_and_each_gets_its_own_answer(
    live: LiveServer,
) -> None:
    """40 panics at once through HTTP, one of them reusing another's Idempotency-Key with
    a different body: 39 incidents with their own answers, the reused key a 409, and
    /metrics shows transactions that carried more than one report."""
    bodies = [panic(zone_point("capital"), trigger=f"burst-{n}") for n in range(40)]

    async def send(n: int, body: dict[str, Any]) -> Any:
        key = "burst-key-0" if n in (0, 39) else f"burst-key-{n}"
        return await live.post_panic(body, key=key)

    responses = await asyncio.gather(*(send(n, b) for n, b in enumerate(bodies)))
    codes = [r.status_code for r in responses]
    assert sorted(codes) == [202] * 39 + [409], codes
    answers = [r.json() for r in responses if r.status_code == 202]
    assert len({a["incident_id"] for a in answers}) == 39
    for response, body in zip(responses, bodies, strict=True):
        if response.status_code == 202:
            report = await live.db.fetchrow(
                "SELECT external_id FROM reports WHERE id = $1", response.json()["report_id"]
            )
            assert report["external_id"] == body["trigger_id"]
    assert await live.count("incidents") == 39
    metrics = (await live.http.get("/metrics")).text
    counts = dict(re.findall(r'erss_intake_group_size_bucket\{le="([0-9.]+)"\} ([0-9.]+)', metrics))
    total = float(re.search(r"erss_intake_group_size_count ([0-9.]+)", metrics).group(1))  # type: ignore[union-attr]
    assert float(counts["1.0"]) < total, json.dumps(counts)  # some carried more than one


async def test_a_report_waiting_for_a_lock_does_not_hold_up_its_group(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """Another transaction holds a row a grouped report must update (a unit another
    group claimed): that report gives up its wait at once and runs alone after the group,
    so the others are answered while the lock is still held, and it is written once the
    lock goes."""
    await pool.execute("INSERT INTO t (n) VALUES (1)")
    holder = await asyncpg.connect(
        settings.database_url, server_settings={"search_path": settings.db_schema}
    )
    try:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT n FROM t WHERE n = 1 FOR UPDATE")
        group = GroupCommit(pool, max_running=1)

        async def blocked(conn: asyncpg.Connection) -> str:
            await conn.execute("UPDATE t SET tag = 'moved' WHERE n = 1")
            return "moved"

        first = asyncio.create_task(group.run(_insert(10)))
        rest = [asyncio.create_task(group.run(w)) for w in (_insert(11), blocked, _insert(12))]
        await wait_for(
            lambda: _done(first, rest[0], rest[2]), within=10, what="the group's answers"
        )
        assert not rest[1].done()  # still waiting, alone, for the lock
        assert [first.result(), rest[0].result(), rest[2].result()] == [10, 11, 12]
        await hold.rollback()
        assert await rest[1] == "moved"
    finally:
        await holder.close()
    assert await pool.fetchval("SELECT tag FROM t WHERE n = 1") == "moved"


async def _done(*tasks: asyncio.Task[Any]) -> bool:
    return all(task.done() for task in tasks)

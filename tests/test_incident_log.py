"""The incident's recorded state changes (dispatch/incident_log.py): each writes its row and
its event together, and an escalation is news once per reason."""

from __future__ import annotations

import asyncpg

from dispatch import incident_log
from dispatch.db import create_pool, migrate
from dispatch.events import notify_channel
from dispatch.settings import Settings
from tests.conftest import LiveServer, wait_for
from tests.test_walking_skeleton import panic, zone_point


async def test_waiting_and_escalating_write_their_rows_and_events(live: LiveServer) -> None:
    await live.db.execute("UPDATE units SET status = 'off_duty'")
    answer = (await live.post_panic(panic(zone_point("capital")))).json()
    assert answer["status"] == "queued"
    incident_id = answer["incident_id"]
    first = await live.db.fetchval("SELECT max(id) FROM events")
    schema = live.settings.db_schema
    async with live.db.acquire() as conn, conn.transaction():
        for reason, escalation in (
            ("w1", "no unit free"),
            ("w2", "no unit free"),  # the same reason again: not news
            ("w3", None),
            ("w4", "roads closed"),
        ):
            status = await incident_log.wait(
                conn, schema, incident_id, actor="operator:t", reason=reason, escalation=escalation
            )
            assert status == "queued"
    rows = await live.db.fetch(
        "SELECT type, actor, zone_id, data FROM events WHERE incident_id = $1 AND id > $2"
        " ORDER BY id",
        incident_id,
        first,
    )
    zone = await live.db.fetchval("SELECT zone_id FROM incidents WHERE id = $1", incident_id)
    assert zone == "capital"
    assert [(r["type"], r["actor"], r["zone_id"]) for r in rows] == [
        ("incident.queued", "operator:t", zone),
        ("incident.escalated", "operator:t", zone),
        ("incident.queued", "operator:t", zone),
        ("incident.queued", "operator:t", zone),
        ("incident.queued", "operator:t", zone),
        ("incident.escalated", "operator:t", zone),
    ]
    assert [r["data"] for r in rows] == [
        {"incident_status": "queued", "reason": "w1", "waiting_for": ["police"]},
        {"reason": "no unit free"},
        {"incident_status": "queued", "reason": "w2", "waiting_for": ["police"]},
        {"incident_status": "queued", "reason": "w3", "waiting_for": ["police"]},
        {"incident_status": "queued", "reason": "w4", "waiting_for": ["police"]},
        {"reason": "roads closed"},
    ]
    row = await live.db.fetchrow(
        "SELECT status, waiting_reason, escalated, escalation_reason FROM incidents WHERE id = $1",
        incident_id,
    )
    assert tuple(row) == ("queued", "w4", True, "roads closed")


async def test_waiting_and_escalating_each_wake_the_relay(settings: Settings) -> None:
    """Each statement that appends an event also sends the NOTIFY the relay waits for
    (without it the events wait for the relay's next poll)."""
    assert settings.database_url
    schema = settings.db_schema
    pool = await create_pool(settings.database_url, schema, min_size=1, max_size=1)
    listener = await asyncpg.connect(settings.database_url)
    woken: list[str] = []
    try:
        async with pool.acquire() as conn:
            await migrate(conn, schema)
            incident_id = await conn.fetchval(
                "INSERT INTO incidents (status, priority, type, zone_id, unfilled)"
                " VALUES ('queued', 1, 'panic', 'capital', '{police}') RETURNING id"
            )
        await listener.add_listener(notify_channel(schema), lambda *args: woken.append(args[2]))
        for step, (kind, call) in enumerate(
            (("incident.queued", incident_log.wait), ("incident.escalated", incident_log.escalate)),
            start=1,
        ):
            # One call per transaction: PostgreSQL folds a transaction's equal NOTIFYs.
            async with pool.acquire() as conn, conn.transaction():
                await call(conn, schema, incident_id, actor="operator:t", reason="r")

            async def notified(count: int = step) -> bool:
                return len(woken) >= count

            await wait_for(notified, what=f"the NOTIFY of {kind}")
            assert await pool.fetchval("SELECT type FROM events ORDER BY id DESC LIMIT 1") == kind
    finally:
        await listener.close()
        await pool.close()

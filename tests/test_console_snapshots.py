"""Console snapshots are shared by the consoles of one audience, and the events after
a shared snapshot's position follow it at once: no gap, no duplicate."""

from __future__ import annotations

import json

from dispatch.snapshots import ConsoleSnapshots, build
from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import panic, zone_point


async def test_a_shared_snapshot_is_followed_by_the_events_since(live: LiveServer) -> None:
    app = live.server.config.loaded_app.app  # type: ignore[attr-defined]
    snapshots = ConsoleSnapshots(live.services.pool, max_age_s=300.0)
    app.state.console_snapshots = snapshots
    async with live.console() as first:
        shared = json.loads(await first.recv())
        answer = (await live.post_panic(panic(zone_point("capital"), trigger="gap"))).json()
        incident_id = answer["incident_id"]
        # Delivered live already: a console connecting now gets it only by replay.
        await receive_until(first, event_of("incident.created", incident_id=incident_id))
        async with live.console() as second:
            snapshot = json.loads(await second.recv())
            created, _ = await receive_until(
                second, event_of("incident.created", incident_id=incident_id)
            )
            await second.send(json.dumps({"type": "ping"}))
            _pong, between = await receive_until(second, lambda m: m["type"] == "pong")
    assert snapshot["position"] == shared["position"]
    assert incident_id not in {i["id"] for i in snapshot["incidents"]}
    assert int(created["position"]) > int(snapshot["position"])
    assert not any(m.get("event", {}).get("id") == created["event"]["id"] for m in between)
    assert snapshots.builds == 1


async def test_a_paged_snapshot_lists_every_unit_once(live: LiveServer) -> None:
    async with live.db.acquire() as conn:
        units = await conn.fetchval("SELECT count(*) FROM units")
        whole = await build(conn, None, page=units + 1)
        paged = await build(conn, None, page=7)
    assert json.loads(paged.text) == json.loads(whole.text)
    assert len(json.loads(paged.text)["units"]) == units

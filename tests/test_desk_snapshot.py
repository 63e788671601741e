"""A desk's snapshot shows what its live events show: no other zone's assignments."""

from __future__ import annotations

import json

from tests.conftest import LiveServer
from tests.test_desks import _desk
from tests.test_walking_skeleton import panic, zone_point


async def test_a_desk_snapshot_lists_only_its_incidents_assignments(live: LiveServer) -> None:
    south = (await live.post_panic(panic(zone_point("capital"), trigger="s"))).json()
    north = (await live.post_panic(panic(zone_point("infocity"), trigger="n"))).json()
    assert south["status"] == north["status"] == "offered"
    async with _desk(live) as desk:
        snapshot = json.loads(await desk.recv())
    offered_for = {a["incident_id"] for a in snapshot["assignments"]}
    assert offered_for == {north["incident_id"]}
    # The city-wide console still sees both.
    async with live.console() as console:
        everything = json.loads(await console.recv())
    assert {a["incident_id"] for a in everything["assignments"]} == {
        south["incident_id"],
        north["incident_id"],
    }

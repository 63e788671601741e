"""A desk's console sees its zones (and every unlocated emergency), live and on replay."""

from __future__ import annotations

import json
from typing import Any

import websockets

from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import panic, zone_point


def _desk(live: LiveServer, **query: str) -> Any:
    token = live.credentials["operators"]["north-desk"]
    suffix = ("?" + "&".join(f"{k}={v}" for k, v in query.items())) if query else ""
    return websockets.connect(
        live.ws_url + "/v1/ws/console" + suffix,
        additional_headers={"Authorization": f"Bearer {token}"},
    )


async def test_north_desk_sees_its_zones_and_unlocated_emergencies_only(
    live: LiveServer,
) -> None:
    async with _desk(live) as desk:
        snapshot = json.loads(await desk.recv())
        assert "infocity" in snapshot["desk"]
        assert {u["zone_id"] for u in snapshot["units"]} <= set(snapshot["desk"])
        south = (await live.post_panic(panic(zone_point("capital"), trigger="s"))).json()
        north = (await live.post_panic(panic(zone_point("infocity"), trigger="n"))).json()
        lost = await live.post_panic(
            {"trigger_id": "x", "device_id": "x", "location": {"lat": 123, "lon": 85.8}}
        )
        unlocated = lost.json()
        created, skipped = await receive_until(
            desk, event_of("incident.created", incident_id=unlocated["incident_id"])
        )
        seen = {m["event"]["incident_id"] for m in skipped if m["type"] == "event"}
        assert north["incident_id"] in seen
        assert south["incident_id"] not in seen
        assert created["event"]["zone_id"] is None
        last = created["position"]

    # Replay from the start applies the same filter.
    async with _desk(live, after="0") as desk:
        replayed: list[dict[str, Any]] = []
        while True:
            message = json.loads(await desk.recv())
            if message["type"] == "replayed":
                break
            replayed.append(message)
    incidents = {m["event"]["incident_id"] for m in replayed} - {None}
    assert incidents == {north["incident_id"], unlocated["incident_id"]}
    # Unit events come with them, of units in the desk's zones only.
    units = {m["event"]["unit_id"] for m in replayed} - {None}
    assert units
    assert all(
        u.split("-")[0] in {"chandaka", "chandrasekharpur", "infocity", "mancheswar", "nandankanan"}
        for u in units
    )
    assert int(replayed[-1]["position"]) >= int(last)

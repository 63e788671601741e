"""Invariant 5: an unanswered offer expires and the next candidate gets it."""

from __future__ import annotations

import json

import pytest

from dispatch.settings import Settings
from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import nearest_police_unit, panic, zone_point


@pytest.fixture
async def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"offer_timeout_s": 0.5, "expiry_poll_s": 0.1})


async def test_unanswered_offer_expires_and_moves_to_the_next_unit(live: LiveServer) -> None:
    """The unit whose crew never answers is released; a different unit gets the offer,
    and a late accept is refused."""
    point = zone_point("badagada")
    first = await nearest_police_unit(live, "badagada", point)
    async with live.console() as console, live.mdt(first) as mdt:
        await console.recv()
        await mdt.recv()
        incident_id = (await live.post_panic(panic(point))).json()["incident_id"]
        offer, _ = await receive_until(mdt, event_of("assignment.offered"))
        expired, _ = await receive_until(mdt, event_of("assignment.expired"), within=10)
        assert expired["event"]["incident_id"] == incident_id
        offered = event_of("assignment.offered")
        second, _ = await receive_until(
            console, lambda m: offered(m) and m["event"]["unit_id"] != first
        )
        assert second["event"]["incident_id"] == incident_id
        late = offer["event"]["data"]["assignment_id"]
        await mdt.send(json.dumps({"type": "accept", "assignment_id": late}))
        refused, _ = await receive_until(mdt, lambda m: m["type"] in ("ack", "error"))
        assert refused["type"] == "error"
        # The documented answer to a late accept, whether or not the sweep ran first.
        assert refused["code"] == "OfferExpired"
        assert "expired" in refused["detail"]
    assert await live.db.fetchval("SELECT status FROM units WHERE id = $1", first) == "available"
    statuses = await live.db.fetch(
        "SELECT unit_id, status FROM assignments WHERE incident_id = $1 ORDER BY id", incident_id
    )
    assert (statuses[0]["unit_id"], statuses[0]["status"]) == (first, "expired")

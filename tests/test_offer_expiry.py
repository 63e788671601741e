"""Invariant 5: an unanswered offer expires and the next candidate gets it."""

from __future__ import annotations

import pytest

from dispatch.settings import Settings
from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import nearest_police_unit, panic, zone_point


@pytest.fixture
async def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"offer_timeout_s": 0.5, "expiry_poll_s": 0.1})


async def test_unanswered_offer_expires_and_moves_to_the_next_unit(live: LiveServer) -> None:
    """The silent unit is released; a different unit gets the next offer."""
    point = zone_point("badagada")
    first = await nearest_police_unit(live, "badagada", point)
    async with live.console() as console:
        await console.recv()
        incident_id = (await live.post_panic(panic(point))).json()["incident_id"]
        expired, _ = await receive_until(console, event_of("assignment.expired"), within=10)
        assert expired["event"]["unit_id"] == first
        assert expired["event"]["incident_id"] == incident_id
        second, _ = await receive_until(console, event_of("assignment.offered"), within=5)
        assert second["event"]["unit_id"] != first
    assert await live.db.fetchval("SELECT status FROM units WHERE id = $1", first) == "available"
    statuses = await live.db.fetch(
        "SELECT unit_id, status FROM assignments WHERE incident_id = $1 ORDER BY id", incident_id
    )
    assert (statuses[0]["unit_id"], statuses[0]["status"]) == (first, "expired")

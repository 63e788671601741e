"""A response plan rule hands an incident to another agency on its own: a medical
emergency with no ambulance of ours free goes to the 108 service's CAD, through the
hand-off outbox, once, and the console sees it; one with an ambulance on the way stays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispatch.exchange.runtime import Exchange, hand_over_by_rules
from dispatch.settings import Settings
from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import panic, zone_point


@pytest.fixture
async def settings(settings: Settings, tmp_path: Path) -> Settings:
    agencies = tmp_path / "agencies.json"
    agencies.write_text(
        json.dumps(
            {
                "108-ambulance": {
                    "endpoint": "http://127.0.0.1:9",  # nobody answers: tries go on quietly
                    "secrets": ["a-secret-of-sixteen-or-more"],
                    "type": "ems",
                    "name": "108 Ambulance",
                    "hand_over_when": {"types": ["medical"], "no_unit_of": "ambulance"},
                }
            }
        )
    )
    return settings.model_copy(update={"agencies_file": agencies})


async def test_medical_with_no_ambulance_free_is_handed_to_108_once(live: LiveServer) -> None:
    await live.db.execute("UPDATE units SET status = 'off_duty' WHERE agency = 'ambulance'")
    async with live.console() as console:
        await console.recv()
        answer = (await live.post_panic(panic(zone_point("jatani"), category="medical"))).json()
        assert answer["status"] == "queued"
        requested, _ = await receive_until(
            console, event_of("incident.handoff_requested"), within=10
        )
    assert requested["event"]["incident_id"] == answer["incident_id"]
    assert requested["event"]["data"]["agency"] == "108-ambulance"
    assert "no ambulance unit of ours" in requested["event"]["data"]["reason"]
    row = await live.db.fetchrow("SELECT incident_id, actor FROM handoffs")
    assert (row["incident_id"], row["actor"]) == (answer["incident_id"], "system:hand-over-rule")
    assert await live.db.fetchval("SELECT count(*) FROM exchange_outbox") == 1
    # Later passes leave it alone: handed over once, not again.
    assert await hand_over_by_rules(_exchange(live)) == 0
    assert await live.db.fetchval("SELECT count(*) FROM handoffs") == 1


async def test_medical_with_an_ambulance_on_the_way_stays_here(live: LiveServer) -> None:
    answer = (await live.post_panic(panic(zone_point("jatani"), category="medical"))).json()
    assert answer["status"] == "offered"
    assert await hand_over_by_rules(_exchange(live)) == 0
    assert await live.db.fetchval("SELECT count(*) FROM handoffs") == 0


def _exchange(live: LiveServer) -> Exchange:
    exchange: Exchange = live.server.config.loaded_app.app.state.exchange  # type: ignore[attr-defined]
    return exchange

"""`erss simulate --live`: the simulator drives a real server through its public contract."""

from __future__ import annotations

import pytest

from dispatch.settings import Settings
from dispatch.simulation.live import run_live
from dispatch.simulation.report import summarise
from dispatch.simulation.scenario import arrivals, demo_city, load_sim_config
from geo.points import GeoPoint
from tests.conftest import LiveServer

CITY = demo_city()
CONFIG = load_sim_config()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"standby_policy": "coverage", "position_flush_s": 0.2})


async def test_a_simulated_hour_is_answered_through_gateways_and_mdts(live: LiveServer) -> None:
    """Every seeded emergency becomes an incident of its type that units of its plan's
    agencies reach; crews that finish are sent to posts of their own zone; the report
    reads the run."""
    day = arrivals(CITY, CONFIG, seed=5, hours=1.0, load=3.0)
    assert len(day) >= 5
    result = await run_live(
        live.base_url,
        live.credentials,
        CITY,
        CONFIG,
        seed=5,
        hours=1.0,
        load=3.0,
        speedup=600.0,
    )
    incidents = {r.incident_id for r in result.responses}
    assert len(incidents) == len(day)
    assert await live.count("incidents") == len(day)
    # The simulated call-taker set each emergency's type, whatever the channel said.
    types = await live.db.fetch("SELECT type FROM incidents")
    assert sorted(r["type"] for r in types) == sorted(a.type for a in day)
    by_type = {(a.type, a.channel, a.zone_id) for a in day}
    units = {u.id: u for u in CITY.units}
    for response in result.responses:
        assert response.on_scene_s is not None, response
        assert response.accepted_s is not None
        assert response.offered_s is not None
        assert response.reported_s <= response.offered_s <= response.accepted_s
        assert response.accepted_s <= response.on_scene_s
        assert response.unit_id is not None
        assert units[response.unit_id].agency == response.agency
        # Each response knows its emergency (report time, channel, type), not the offer's.
        assert (response.type, response.channel, response.zone_id) in by_type
    # The simulated operator closed the incidents whose crews had finished, only those.
    closed = await live.db.fetch("SELECT id, disposition FROM incidents WHERE status = 'closed'")
    assert closed
    # Closed after the crews' reports were taken: no job was cut short by a close.
    assert not await live.db.fetchval("SELECT count(*) FROM assignments WHERE status = 'cancelled'")
    for row in closed:
        assert row["disposition"] == "resolved"
        mine = [r for r in result.responses if r.incident_id == row["id"]]
        assert mine
        assert all(r.on_scene_s is not None for r in mine)
    report = summarise(result, CONFIG)
    assert report["overall"]["responses"] == len(result.responses)
    assert report["overall"]["unserved"] == 0
    # Every 5 simulated minutes: 12 in the hour, but at 600x a sample is 0.5 s of wall
    # clock, and a loaded machine may run one late past the end.
    assert len(result.queue) >= 10, "the queue is sampled about every 5 simulated minutes"
    # Some crews finished within the hour and were told where to wait, in their zone.
    posts = await live.db.fetch(
        "SELECT e.unit_id, e.data->>'zone_id' AS zone_id, (e.data->>'lat')::float AS lat,"
        " (e.data->>'lon')::float AS lon FROM events e WHERE e.type = 'unit.post_assigned'"
    )
    assert posts
    # MDT bots drive to their posts: some got there (their last flushed ping is the post).
    arrived = await live.db.fetchval(
        "SELECT count(*) FROM units WHERE post_lat IS NOT NULL"
        " AND abs(lat - post_lat) < 1e-6 AND abs(lon - post_lon) < 1e-6"
    )
    assert arrived >= 1
    # Crews never dispatched still patrol their zone: their pings moved them.
    patrolled = await live.db.fetch(
        "SELECT u.id, u.home_zone_id, u.zone_id FROM units u WHERE NOT EXISTS"
        " (SELECT 1 FROM assignments a WHERE a.unit_id = u.id)"
        " AND EXISTS (SELECT 1 FROM unit_track t WHERE t.unit_id = u.id)"
    )
    assert len(patrolled) >= 10
    assert sum(r["zone_id"] == r["home_zone_id"] for r in patrolled) >= 0.8 * len(patrolled)
    for post in posts:
        assert post["zone_id"] == units[post["unit_id"]].zone_id
        zone = CITY.zones.zone_of(GeoPoint(lat=post["lat"], lon=post["lon"]), tolerance_m=0.0)
        assert zone is not None
        assert zone.id == post["zone_id"]

"""Vehicle panic buttons in the simulated day: a share of the emergencies, reported
through the vehicle gateway, whose incidents follow the moving bus."""

from __future__ import annotations

import dataclasses
import itertools

from dispatch.simulation.live import run_live
from dispatch.simulation.scenario import arrivals, demo_city, load_sim_config
from dispatch.simulation.vehicles import MOVES, vehicle_alerts
from geo.distance import distance_m
from geo.points import GeoPoint
from tests.conftest import LiveServer

CITY = demo_city()
CONFIG = load_sim_config()


def test_vehicle_panics_are_a_share_of_the_day_through_their_own_channel() -> None:
    day = [a for s in range(10) for a in arrivals(CITY, CONFIG, seed=s)]
    buses = [a for a in day if a.type == "vehicle_panic"]
    assert 0 < len(buses) < len(day) / 10
    assert {a.channel for a in buses} == {"vehicle"}
    assert "vehicle" not in {a.channel for a in day if a.type != "vehicle_panic"}


def test_a_pressed_button_is_an_emergency_then_the_moving_bus() -> None:
    bus = next(a for a in arrivals(CITY, CONFIG, seed=3) if a.type == "vehicle_panic")
    alerts = vehicle_alerts(bus, 3)
    assert [a["alert_type"] for _, a in alerts] == ["emergency"] + ["tracking"] * MOVES
    assert len({a["imei"] for _, a in alerts}) == 1
    assert len(alerts[0][1]["imei"]) == 15
    points = [GeoPoint(lat=a["location"]["lat"], lon=a["location"]["lon"]) for _, a in alerts]
    gaps = [distance_m(p, q) for p, q in itertools.pairwise(points)]
    assert all(100 < g < 300 for g in gaps)
    assert vehicle_alerts(bus, 3)[1][1]["location"] == alerts[1][1]["location"], "seeded"


async def test_a_simulated_hour_of_bus_panics_moves_their_incidents(live: LiveServer) -> None:
    config = dataclasses.replace(CONFIG, type_mix={"vehicle_panic": 1.0})
    day = arrivals(CITY, config, seed=7, hours=0.5, load=1.0)
    assert day
    result = await run_live(
        live.base_url, live.credentials, CITY, config, seed=7, hours=0.5, load=1.0, speedup=600.0
    )
    assert {r.incident_id for r in result.responses}
    types = {r["type"] for r in await live.db.fetch("SELECT type FROM incidents")}
    assert types == {"vehicle_panic"}
    assert await live.count("incidents") == len(day)
    moved = await live.db.fetchval(
        "SELECT count(DISTINCT incident_id) FROM events WHERE type = 'incident.location_updated'"
        " AND data->>'report_id' IS NULL"
    )
    assert moved > 0, "the buses' tracking fixes moved their incidents"
    assert await live.db.fetchval("SELECT count(*) FROM vehicles") == len(day)

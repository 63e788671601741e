"""Standby posts on the live server: a crew that finishes a job is told where to wait."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pydantic
import pytest

from dispatch.engine import TravelModel
from dispatch.posts import CoveragePosts, Post, standby_named
from dispatch.settings import Settings
from dispatch.simulation.policies import Demand
from geo.distance import distance_m
from geo.points import GeoPoint
from tests.conftest import LiveServer, event_of, receive_until
from tests.test_mdt_status import _command
from tests.test_walking_skeleton import nearest_police_unit, panic, zone_point

ZONE = "lingaraj"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"standby_policy": "coverage"})


async def _finish_a_job(live: LiveServer, mdt: Any, unit: str, trigger: str = "t-1") -> None:
    """Panic next to ``unit``; its crew accepts and gets there (on scene)."""
    await live.post_panic(panic(zone_point(ZONE), trigger))
    offer, _ = await receive_until(mdt, event_of("assignment.offered", unit_id=unit))
    accept = {"type": "accept", "assignment_id": offer["event"]["data"]["assignment_id"]}
    assert (await _command(mdt, accept))["type"] == "ack"
    for status in ("en_route", "on_scene"):
        assert (await _command(mdt, {"type": "status", "status": status}))["type"] == "ack"


def _mexclp_post(rule: CoveragePosts, zone: str, here: GeoPoint, others: list[GeoPoint]) -> Post:
    """The test's own reading of the rule (dispatch/posts.py's docstring), point by
    point in plain Python: each demand point j of weight w_j, already reached by k_j
    idle units, gains w_j (1 - q) q**k_j from one more; the post of the zone whose
    reachable points gain the most wins, the nearest to ``here`` among equals."""
    d, q, reach = rule.demand, rule.busy_fraction, rule.reach_m
    points = [GeoPoint(lat=float(a), lon=float(b)) for a, b in zip(d.lat, d.lon, strict=True)]
    k = [sum(distance_m(o, p) <= reach for o in others) for p in points]
    best: tuple[float, float, GeoPoint] | None = None
    for post, zone_of in zip(points, d.zone, strict=True):
        if str(zone_of) != zone:
            continue
        gain = sum(
            float(w) * (1 - q) * q**kj
            for p, w, kj in zip(points, d.weight, k, strict=True)
            if distance_m(post, p) <= reach
        )
        key = (-round(gain, 9), distance_m(post, here), post)
        if best is None or key[:2] < best[:2]:
            best = key
    assert best is not None
    return Post(best[2], zone, -best[0])


def test_the_post_is_the_one_that_adds_most_coverage_by_hand() -> None:
    """Three posts 10 km apart (each reaches only itself), weights 1, 1 and 3 reports an
    hour, q = 0.5: alone, C adds 3 x 0.5 = 1.5; with one unit already at C it adds
    0.75, still more than A or B (0.5); with two there, 0.375, so A or B, whichever is
    nearer."""
    a, b, c = (GeoPoint(lat=20.0, lon=85.0 + 0.1 * n) for n in range(3))
    demand = Demand(
        lat=np.array([a.lat, b.lat, c.lat]),
        lon=np.array([a.lon, b.lon, c.lon]),
        weight=np.array([1.0, 1.0, 3.0]),
        zone=np.array(["z", "z", "z"]),
    )
    rule = CoveragePosts(demand, TravelModel(), busy_fraction=0.5)
    assert rule.reach_m < distance_m(a, b) / 2
    alone = rule.choose("z", a, [])
    assert alone is not None
    assert (alone.point, alone.gain) == (c, pytest.approx(1.5))
    one = rule.choose("z", a, [c])
    assert one is not None
    assert (one.point, one.gain) == (c, pytest.approx(0.75))
    two = rule.choose("z", b, [c, c])
    assert two is not None
    assert (two.point, two.gain) == (b, pytest.approx(0.5))
    near_a = rule.choose("z", GeoPoint(lat=20.0, lon=84.9), [c, c])
    assert near_a is not None
    assert near_a.point == a
    assert rule.choose("elsewhere", a, []) is None
    for here, others in [(a, []), (a, [c]), (b, [c, c]), (c, [a, b])]:
        post = rule.choose("z", here, others)
        assert post is not None
        expected = _mexclp_post(rule, "z", here, others)
        assert (post.point, post.gain) == (expected.point, pytest.approx(expected.gain))


async def test_a_freed_unit_is_sent_to_the_post_that_covers_most(live: LiveServer) -> None:
    """The post is the one that adds most coverage given where the other idle units stand
    (a sibling already waiting at the zone's best post pushes it elsewhere), as the
    test's own brute force of the rule computes it; the MDT, the console, the REST view
    and the table all say so."""
    unit = await nearest_police_unit(live, ZONE, zone_point(ZONE))
    rule = standby_named(
        "coverage", zones=live.services.dispatcher.zones, model=live.services.dispatcher.travel
    )
    assert rule is not None
    alone = rule.choose(ZONE, zone_point(ZONE), [])
    assert alone is not None
    # A sibling of the same zone waits at the best post already.
    await live.db.execute(
        "UPDATE units SET post_lat = $1, post_lon = $2 WHERE home_zone_id = $3 AND id <> $4"
        " AND agency = 'police'",
        alone.point.lat,
        alone.point.lon,
        ZONE,
        unit,
    )
    async with live.mdt(unit) as mdt, live.console() as console:
        await mdt.recv()
        await console.recv()
        await _finish_a_job(live, mdt, unit)
        others = await live.db.fetch(
            "SELECT coalesce(post_lat, lat) AS lat, coalesce(post_lon, lon) AS lon FROM units"
            " WHERE agency = 'police' AND id <> $1 AND status IN ('available', 'returning')",
            unit,
        )
        here = await live.db.fetchrow("SELECT lat, lon FROM units WHERE id = $1", unit)
        expected = _mexclp_post(
            rule,
            ZONE,
            GeoPoint(lat=here["lat"], lon=here["lon"]),
            [GeoPoint(lat=r["lat"], lon=r["lon"]) for r in others],
        )
        assert expected.point != alone.point
        assert (await _command(mdt, {"type": "status", "status": "available"}))["type"] == "ack"
        told, _ = await receive_until(mdt, event_of("unit.post_assigned", unit_id=unit))
        seen, _ = await receive_until(console, event_of("unit.post_assigned", unit_id=unit))
    data = told["event"]["data"]
    assert seen["event"]["data"] == data
    assert (data["lat"], data["lon"]) == (expected.point.lat, expected.point.lon)
    assert data["zone_id"] == ZONE
    assert data["policy"] == "coverage"
    assert data["covers_per_hour"] == pytest.approx(expected.gain, abs=1e-3)
    row = await live.db.fetchrow("SELECT post_lat, post_lon FROM units WHERE id = $1", unit)
    assert (row["post_lat"], row["post_lon"]) == (data["lat"], data["lon"])
    view = await live.http.get(
        "/v1/units", headers={"Authorization": f"Bearer {live.operator_token}"}
    )
    mine = next(u for u in view.json() if u["id"] == unit)
    assert mine["post"] == {"lat": data["lat"], "lon": data["lon"]}
    # Desks see it by the post's zone, wherever the job ended.
    zone = await live.db.fetchval(
        "SELECT zone_id FROM events WHERE type = 'unit.post_assigned' AND unit_id = $1", unit
    )
    assert zone == ZONE


async def test_a_post_holds_until_the_next_job(live: LiveServer) -> None:
    """Accepting a job drops the post (the crew is no longer waiting there), so neither
    the views nor the next coverage count show it at the old place."""
    unit = await nearest_police_unit(live, ZONE, zone_point(ZONE))
    async with live.mdt(unit) as mdt:
        await mdt.recv()
        await _finish_a_job(live, mdt, unit)
        assert (await _command(mdt, {"type": "status", "status": "available"}))["type"] == "ack"
        await receive_until(mdt, event_of("unit.post_assigned", unit_id=unit))
        assert await live.db.fetchval("SELECT post_lat FROM units WHERE id = $1", unit)
        await live.post_panic(panic(zone_point(ZONE), "t-2"))
        offer, _ = await receive_until(mdt, event_of("assignment.offered", unit_id=unit))
        # Offered is not yet a job: a declined or withdrawn offer leaves the crew heading
        # to its post.
        assert await live.db.fetchval("SELECT post_lat FROM units WHERE id = $1", unit)
        withdrawn = await live.http.post(
            f"/v1/assignments/{offer['event']['data']['assignment_id']}/cancel",
            json={"reason": "wrong unit"},
            headers={"Authorization": f"Bearer {live.operator_token}"},
        )
        assert withdrawn.status_code == 200
        assert await live.db.fetchval("SELECT post_lat FROM units WHERE id = $1", unit)
        await live.post_panic(panic(zone_point(ZONE), "t-3"))
        offer, _ = await receive_until(mdt, event_of("assignment.offered", unit_id=unit))
        accept = {"type": "accept", "assignment_id": offer["event"]["data"]["assignment_id"]}
        assert (await _command(mdt, accept))["type"] == "ack"
    row = await live.db.fetchrow("SELECT status, post_lat, post_lon FROM units WHERE id = $1", unit)
    assert row["status"] == "dispatched"
    assert row["post_lat"] is None
    assert row["post_lon"] is None


@pytest.mark.parametrize("ending", ["available", "returning"])
async def test_two_crews_finishing_together_get_different_posts(
    live: LiveServer, ending: str
) -> None:
    """Both of a zone's PCRs end their jobs at the same moment (available, or returning,
    the usual end): the second to be served sees the first's new post and goes
    elsewhere."""
    units = sorted(
        r["id"]
        for r in await live.db.fetch(
            "SELECT id FROM units WHERE home_zone_id = $1 AND agency = 'police'", ZONE
        )
    )
    assert len(units) == 2
    async with live.mdt(units[0]) as first, live.mdt(units[1]) as second:
        await first.recv()
        await second.recv()
        # Keep each crew's job apart: the other unit is busy while one is offered.
        await live.db.execute("UPDATE units SET status = 'off_duty' WHERE id = $1", units[1])
        await _finish_a_job(live, first, units[0], "t-1")
        await live.db.execute("UPDATE units SET status = 'available' WHERE id = $1", units[1])
        await _finish_a_job(live, second, units[1], "t-2")
        done = json.dumps({"type": "status", "status": ending})
        await asyncio.gather(first.send(done), second.send(done))
        told = [
            (await receive_until(mdt, event_of("unit.post_assigned", unit_id=u)))[0]
            for mdt, u in ((first, units[0]), (second, units[1]))
        ]
    places = {(m["event"]["data"]["lat"], m["event"]["data"]["lon"]) for m in told}
    assert len(places) == 2


async def test_a_refused_status_names_no_post(live: LiveServer) -> None:
    """Only a completed job moves a unit: a status the lifecycle refuses writes nothing."""
    async with live.mdt("capital-pcr-1") as mdt:
        await mdt.recv()
        before = await live.count("events")
        reply = await _command(mdt, {"type": "status", "status": "returning"})
        assert reply["code"] == "InvalidTransition"
    assert await live.count("events") == before
    assert await live.db.fetchval("SELECT post_lat FROM units WHERE id = 'capital-pcr-1'") is None


def test_an_unknown_standby_policy_is_refused_at_start() -> None:
    with pytest.raises(pydantic.ValidationError, match="standby_policy must be patrol or"):
        Settings(standby_policy="everywhere")

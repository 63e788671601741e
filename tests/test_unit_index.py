"""The live unit index: a hint that never makes a claimed or stale unit a candidate."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from dispatch.db import create_pool, migrate
from dispatch.demo import demo_zones, load_demo
from dispatch.engine import TravelModel
from dispatch.incident_types import load_incident_types
from dispatch.keys import RedisKeys
from dispatch.offers import Dispatcher
from dispatch.settings import Settings
from dispatch.unit_index import UnitIndex
from dispatch.zonestore import ZoneDirectory
from geo.distance import distance_m
from geo.points import GeoPoint
from geo.zones import ZoneIndex
from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import panic, zone_point

STATUSES = ["available", "offered", "dispatched", "off_duty", "out_of_service"]


async def _indexed(live: LiveServer, unit_id: str) -> bool:
    assert live.settings.redis_url
    client = aioredis.from_url(live.settings.redis_url)
    try:
        key = RedisKeys(live.settings.redis_prefix).available_units("police")
        return await client.zscore(key, unit_id) is not None
    finally:
        await client.aclose()


async def test_index_follows_claims_and_releases(live: LiveServer) -> None:
    """Rebuilt when a relay takes the lead; a claimed unit leaves it, a declining one
    comes back."""
    for _ in range(50):  # the relay takes the lead just after start-up
        if await _indexed(live, "capital-pcr-1"):
            break
        await asyncio.sleep(0.05)
    assert await _indexed(live, "capital-pcr-1")
    point = zone_point("capital")
    async with live.console() as console:
        await console.recv()
        answer = (await live.post_panic(panic(point))).json()
        offer, _ = await receive_until(console, event_of("assignment.offered"))
        unit = offer["event"]["unit_id"]
        for _ in range(50):
            if not await _indexed(live, unit):
                break
            await asyncio.sleep(0.05)
        assert not await _indexed(live, unit)
    async with live.mdt(unit) as mdt:
        await mdt.recv()
        assignment_id = offer["event"]["data"]["assignment_id"]
        await mdt.send(json.dumps({"type": "decline", "assignment_id": assignment_id}))
        await receive_until(mdt, lambda m: m["type"] == "ack")
    for _ in range(50):
        if await _indexed(live, unit):
            break
        await asyncio.sleep(0.05)
    assert await _indexed(live, unit)
    assert answer["status"] == "offered"


def test_candidates_are_never_claimed_or_stale(settings: Settings) -> None:
    """Whatever the index holds (stale entries, busy units), what the dispatcher ranks
    is available and fresh in PostgreSQL."""
    loop = asyncio.new_event_loop()
    keys = RedisKeys(settings.redis_prefix)

    async def setup() -> tuple[asyncpg.Pool, aioredis.Redis]:
        assert settings.database_url
        assert settings.redis_url
        pool = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=2)
        async with pool.acquire() as conn:
            await migrate(conn, settings.db_schema)
            await load_demo(conn, base_url="")
        return pool, aioredis.from_url(settings.redis_url)

    pool, redis = loop.run_until_complete(setup())
    index = UnitIndex(redis=redis, keys=keys)
    dispatcher = Dispatcher(
        schema=settings.db_schema,
        zones=ZoneDirectory(ZoneIndex(demo_zones())),
        incident_types=load_incident_types(),
        travel=TravelModel(),
        offer_timeout_s=30,
        position_stale_s=600,
        unit_index=index,
    )

    @hsettings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        statuses=st.lists(st.sampled_from(STATUSES), min_size=34, max_size=34),
        stale=st.lists(st.booleans(), min_size=34, max_size=34),
        seed=st.integers(),
    )
    def check(statuses: list[str], stale: list[bool], seed: int) -> None:
        async def run() -> None:
            async with pool.acquire() as conn:
                ids = [
                    r["id"]
                    for r in await conn.fetch(
                        "SELECT id FROM units WHERE agency = 'police' ORDER BY id"
                    )
                ]
                states = list(zip(ids, statuses, stale, strict=True))
                await index.rebuild(conn)  # the units available before are indexed ...
                key = keys.available_units("police")
                indexed = {m.decode() for m in await redis.zrange(key, 0, -1)}
                await conn.executemany(
                    "UPDATE units SET status = $2, position_at = now() - make_interval("
                    "secs => $3) WHERE id = $1",
                    [(u, s, 3600.0 if old else 0.0) for u, s, old in states],
                )  # ... while PostgreSQL has moved on
                zone = random.Random(seed).choice(demo_zones())
                point = GeoPoint.from_shapely(zone.geometry.representative_point())
                nearest = await index.nearest(point, "police", radius_m=50_000, count=64)
                assert nearest is not None
                found = await dispatcher.available_units(conn, agency="police", among=nearest)
                ok = {u for u, s, old in states if s == "available" and not old}
                # The demo fleet (34) is under the search count (64): the index returns
                # every indexed unit within the radius, and of those exactly the ones
                # available and fresh in PostgreSQL now are candidates.
                rows = await conn.fetch("SELECT id, lat, lon FROM units WHERE agency = 'police'")
                far = {
                    r["id"]: distance_m(point, GeoPoint(lat=r["lat"], lon=r["lon"]))
                    for r in rows
                    if r["id"] in indexed
                }
                assert {u for u, d in far.items() if d < 49_999} <= set(nearest)
                assert set(nearest) <= {u for u, d in far.items() if d < 50_001}
                ok &= set(nearest)
                assert {u.id for u in found} == ok

        loop.run_until_complete(run())

    try:
        check()
    finally:
        loop.run_until_complete(redis.aclose())
        loop.run_until_complete(pool.close())
        loop.close()


# A fleet larger than the search count, spread over about 30 km around Bhubaneswar, so
# the index has to choose, and its growing rings (1 km, 3 km, then the radius) matter.
_CENTRE = GeoPoint(lat=20.2961, lon=85.8245)


def _fleet(rng: random.Random, size: int) -> dict[str, GeoPoint]:
    fleet = {}
    for n in range(size):
        # Denser near the centre, as a city's patrols are.
        spread = rng.choice([0.01, 0.03, 0.12])
        fleet[f"u{n:03d}"] = GeoPoint(
            lat=_CENTRE.lat + rng.uniform(-spread, spread),
            lon=_CENTRE.lon + rng.uniform(-spread, spread),
        )
    return fleet


@hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 2**32),
    count=st.sampled_from([1, 3, 10, 64]),
    radius_m=st.sampled_from([500.0, 2_000.0, 5_000.0, 50_000.0]),
)
def test_nearest_are_the_nearest_in_order(
    unit_index_redis: tuple[UnitIndex, aioredis.Redis, str, asyncio.AbstractEventLoop],
    seed: int,
    count: int,
    radius_m: float,
) -> None:
    """Against a brute-force scan of the same positions: the index returns the
    ``count`` nearest units within the radius (all of them when fewer), nearest first."""
    index, redis, key, loop = unit_index_redis
    rng = random.Random(seed)
    fleet = _fleet(rng, 300)
    point = GeoPoint(
        lat=_CENTRE.lat + rng.uniform(-0.05, 0.05), lon=_CENTRE.lon + rng.uniform(-0.05, 0.05)
    )

    async def run() -> list[str] | None:
        await redis.delete(key)
        await redis.geoadd(key, [v for u, p in fleet.items() for v in (p.lon, p.lat, u)])
        return await index.nearest(point, "police", radius_m=radius_m, count=count)

    found = loop.run_until_complete(run())
    assert found is not None
    far = {u: distance_m(point, p) for u, p in fleet.items()}
    # Redis measures on a slightly different sphere and stores 52-bit geohashes: allow
    # a metre either way at the boundaries.
    within = sorted((d, u) for u, d in far.items() if d <= radius_m - 1)
    assert len(found) >= min(count, len(within))
    assert len(found) <= count
    assert all(far[u] <= radius_m + 1 for u in found)
    distances = [far[u] for u in found]
    assert all(a <= b + 1 for a, b in itertools.pairwise(distances)), distances
    if found:
        left_out = [d for u, d in far.items() if u not in found and d <= radius_m - 1]
        assert all(d >= distances[-1] - 1 for d in left_out)


def test_every_ring_of_a_search_is_one_round_trip(
    unit_index_redis: tuple[UnitIndex, aioredis.Redis, str, asyncio.AbstractEventLoop],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Units only beyond the first two rings: the search still finds the nearest, in one
    command to Redis (a surge, with nobody free near an incident, made it three)."""
    index, redis, key, loop = unit_index_redis
    point = _CENTRE
    # About 5, 6 and 8 km north of the point: outside the 1 km and 3 km rings.
    far = {
        f"u{n}": GeoPoint(lat=point.lat + km / 111.0, lon=point.lon)
        for n, km in enumerate((8, 5, 6))
    }
    sent: list[object] = []
    real = redis.execute_command

    async def counted(*args: object, **kwargs: object) -> object:
        sent.append(args[0])
        return await real(*args, **kwargs)

    async def run() -> list[str] | None:
        await redis.delete(key)
        await redis.geoadd(key, [v for u, p in far.items() for v in (p.lon, p.lat, u)])
        monkeypatch.setattr(redis, "execute_command", counted)
        return await index.nearest(point, "police", radius_m=15_000, count=2)

    found = loop.run_until_complete(run())
    assert found == ["u1", "u2"]
    assert len(sent) == 1, sent


@pytest.fixture
def unit_index_redis(
    settings: Settings,
) -> Iterator[tuple[UnitIndex, aioredis.Redis, str, asyncio.AbstractEventLoop]]:
    """A UnitIndex on the test's own Redis prefix, driven from a private event loop."""
    assert settings.redis_url
    loop = asyncio.new_event_loop()
    redis = aioredis.from_url(settings.redis_url)
    keys = RedisKeys(settings.redis_prefix)
    try:
        yield UnitIndex(redis=redis, keys=keys), redis, keys.available_units("police"), loop
    finally:
        loop.run_until_complete(redis.aclose())
        loop.close()

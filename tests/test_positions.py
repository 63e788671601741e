"""MDT location pings: Redis in one batch per tick, PostgreSQL in sampled batches."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets

from dispatch.keys import RedisKeys
from dispatch.settings import Settings
from geo.points import GeoPoint
from tests.conftest import LiveServer, event_of, receive_until, wait_for
from tests.test_walking_skeleton import zone_point


@pytest.fixture
async def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"position_flush_s": 0.2})


async def test_pings_move_the_unit_into_another_zone(live: LiveServer) -> None:
    """The unit's position, zone and track follow its pings; bad pings are refused."""
    target = zone_point("nandankanan")
    async with live.mdt("capital-pcr-1") as mdt:
        await mdt.recv()
        for n in range(3):
            await mdt.send(
                json.dumps(
                    {
                        "type": "location",
                        "lat": target.lat + n * 1e-4,
                        "lon": target.lon,
                        "accuracy_m": 6.0,
                        "time": datetime.now(UTC).isoformat(),
                    }
                )
            )
        # The unit's own events (it left its home zone) may come in between: skip them.
        await mdt.send(json.dumps({"type": "location", "lat": 95.0, "lon": 85.0}))
        error, _ = await receive_until(mdt, lambda m: m["type"] != "event")
        assert error["code"] == "invalid_location"
        await mdt.send(json.dumps({"type": "location", "lat": "20.1", "lon": 85.0}))
        error, _ = await receive_until(mdt, lambda m: m["type"] != "event")
        assert error["code"] == "invalid_message"
        assert "lat" in error["detail"]
        # Pings reach Redis in the next tick's batch; the pong comes after they have.
        await mdt.send(json.dumps({"type": "ping"}))
        pong, _ = await receive_until(mdt, lambda m: m["type"] != "event")
        assert pong["type"] == "pong"

    assert live.settings.redis_url
    redis = aioredis.from_url(live.settings.redis_url)
    try:
        [(lon, lat)] = await redis.geopos(
            RedisKeys(live.settings.redis_prefix).unit_positions, "capital-pcr-1"
        )
    finally:
        await redis.aclose()
    assert lat == pytest.approx(target.lat + 2e-4, abs=1e-5)
    assert lon == pytest.approx(target.lon, abs=1e-5)

    async def moved() -> Any:
        row = await live.db.fetchrow("SELECT lat, zone_id FROM units WHERE id = 'capital-pcr-1'")
        return row if row["zone_id"] == "nandankanan" else None

    row = await wait_for(moved, what="the flush of the last ping")
    assert row["lat"] == pytest.approx(target.lat + 2e-4)
    # Three pings inside one flush interval are one sampled track row.
    assert await live.count("unit_track") == 1


async def test_leaving_the_home_zone_alerts_once_despite_border_wobble(live: LiveServer) -> None:
    """Pings wobbling across the border within the hysteresis make no alert; going well
    outside makes one, coming back inside another."""
    from dispatch.demo import demo_zones
    from geo.zones import ZoneIndex

    index = ZoneIndex(demo_zones())
    home = index.get("capital")
    assert home is not None
    inside = zone_point("capital")
    neighbour = index.get("kharavel-nagar")
    assert neighbour is not None
    border = home.geometry.boundary.intersection(neighbour.geometry.boundary)
    on_border = GeoPoint.from_shapely(border.representative_point())
    far_out = zone_point("nandankanan")

    async def ping(mdt: object, point: GeoPoint) -> None:
        """One ping, then wait for its flush (each flush writes one track row)."""
        count = "SELECT count(*) FROM unit_track WHERE unit_id = 'capital-pcr-2'"
        before = await live.db.fetchval(count)
        await mdt.send(json.dumps({"type": "location", "lat": point.lat, "lon": point.lon}))  # type: ignore[attr-defined]

        async def flushed() -> bool:
            return bool(await live.db.fetchval(count) > before)

        await wait_for(flushed, what="the ping's flush")

    async with live.console() as console, live.mdt("capital-pcr-2") as mdt:
        await console.recv()
        await mdt.recv()
        for point in (on_border, inside, on_border, far_out, far_out, inside):
            await ping(mdt, point)
        left, _ = await receive_until(console, event_of("unit.left_home_zone"))
        back, between = await receive_until(console, event_of("unit.returned_home_zone"))
    assert left["event"]["data"]["home_zone_id"] == "capital"
    assert left["event"]["data"]["zone_id"] == "nandankanan"
    assert back["event"]["unit_id"] == "capital-pcr-2"
    assert not any(m.get("event", {}).get("type") == "unit.left_home_zone" for m in between)
    alerts = await live.db.fetchval(
        "SELECT count(*) FROM events WHERE type IN ('unit.left_home_zone',"
        " 'unit.returned_home_zone')"
    )
    assert alerts == 2


def _desk(live: LiveServer) -> Any:
    token = live.credentials["operators"]["north-desk"]
    return websockets.connect(
        live.ws_url + "/v1/ws/console", additional_headers={"Authorization": f"Bearer {token}"}
    )


async def test_consoles_get_moving_units_pushed_and_mdts_do_not(live: LiveServer) -> None:
    """Pings reach every console, desks included (their map shows the whole fleet), as
    batched `positions` messages within about a second, with no poll; MDTs get none."""
    north = zone_point("infocity")
    south = zone_point("capital")
    async with (
        live.console() as city,
        _desk(live) as desk,
        live.mdt("infocity-pcr-1") as up,
        live.mdt("capital-pcr-1") as down,
    ):
        assert "capital" not in json.loads(await desk.recv())["desk"]
        for ws in (city, up, down):
            await ws.recv()
        for mdt, point in ((up, north), (down, south)):
            fix = {"type": "location", "lat": point.lat, "lon": point.lon, "accuracy_m": 5.0}
            await mdt.send(json.dumps(fix))

        async def moved(ws: Any, wanted: set[str]) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            while not wanted <= set(seen):
                message, _ = await receive_until(ws, lambda m: m["type"] == "positions")
                seen.update({u["id"]: u for u in message["units"]})
            return seen

        both = {"infocity-pcr-1", "capital-pcr-1"}
        everything = await moved(city, both)
        assert everything["capital-pcr-1"]["zone_id"] == "capital"
        assert everything["infocity-pcr-1"]["lat"] == pytest.approx(north.lat)
        assert (await moved(desk, both)).keys() >= both
        # A ping as a marker: by its pong, nothing else was sent to the MDTs.
        for mdt in (up, down):
            await mdt.send(json.dumps({"type": "ping"}))
            _, before = await receive_until(mdt, lambda m: m["type"] == "pong")
            assert not [m for m in before if m["type"] == "positions"]
    # Not events: nothing was added to the log for the pings.
    assert not await live.db.fetchval(
        "SELECT count(*) FROM events WHERE type NOT IN ('unit.left_home_zone',"
        " 'unit.returned_home_zone')"
    )


async def test_a_tick_writes_the_newest_fix_of_each_unit(live: LiveServer) -> None:
    """Fixes taken between two ticks go to Redis together; of one unit's fixes the
    newest by its time wins whatever the order they came in, and a fix older than the
    one Redis keeps never replaces it (the map, the ranking's fixes and the index)."""
    from dispatch.unit_index import UnitIndex
    from geo.location import Location

    positions = live.services.positions
    keys = RedisKeys(live.settings.redis_prefix)
    redis = live.services.redis
    a, b = zone_point("capital"), zone_point("nandankanan")
    now = datetime.now(UTC)

    def fix(point: GeoPoint, age_s: float) -> Location:
        return Location(point, 5.0, "gps", now - timedelta(seconds=age_s))

    async def indexed() -> bool:
        # The relay builds the available units' index from PostgreSQL when it leads.
        return (await redis.geopos(keys.available_units("police"), "capital-pcr-2"))[0] is not None

    await wait_for(indexed, what="the unit index's build")
    # In one tick: the newer fix first, then an older one buffered in a tunnel.
    positions.take("capital-pcr-1", "police", fix(a, 10))
    positions.take("capital-pcr-1", "police", fix(b, 60))
    positions.take("capital-pcr-2", "police", fix(b, 10))
    await positions.settled()
    fixes = await UnitIndex(redis=redis, keys=keys).fixes(["capital-pcr-1", "capital-pcr-2"])
    assert fixes is not None
    assert fixes["capital-pcr-1"].point.lat == pytest.approx(a.lat)
    assert fixes["capital-pcr-2"].point.lat == pytest.approx(b.lat)
    [(_, lat)] = await redis.geopos(keys.unit_positions, "capital-pcr-1")
    assert lat == pytest.approx(a.lat, abs=1e-5)
    [(_, lat)] = await redis.geopos(keys.available_units("police"), "capital-pcr-2")
    assert lat == pytest.approx(b.lat, abs=1e-5)

    # A later tick with a fix older than the one kept: Redis keeps the newer.
    positions.take("capital-pcr-2", "police", fix(a, 30))
    await positions.settled()
    fixes = await UnitIndex(redis=redis, keys=keys).fixes(["capital-pcr-2"])
    assert fixes is not None
    assert fixes["capital-pcr-2"].point.lat == pytest.approx(b.lat)

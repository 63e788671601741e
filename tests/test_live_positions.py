"""Ranking by the newest position each MDT sent, not PostgreSQL's flushed copy.

Pings reach PostgreSQL in batches (``position_flush_s``); a unit that pinged 15 m from
a panic a moment ago must win over one whose flushed position says it is near but whose
MDT says it is a kilometre away. Here the flush is a minute, so nothing in these tests
is ever flushed: whatever the ranking knows of the pings, it knew live.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from dispatch.engine import TravelModel
from dispatch.incident_types import load_incident_types
from dispatch.offers import Dispatcher
from dispatch.settings import Settings
from dispatch.unit_index import UnitIndex
from dispatch.zonestore import ZoneDirectory
from geo.points import GeoPoint
from tests.conftest import LiveServer, receive_until
from tests.test_walking_skeleton import panic, zone_point

ZONE = "khandagiri"
PINGED_CLOSE = "khandagiri-pcr-1"  # flushed a kilometre away; its MDT pings 15 m away
FLUSHED_CLOSE = "khandagiri-pcr-2"  # flushed next to the panic; its MDT pings 1 km away
_M_PER_DEG = 111_195.0


@pytest.fixture
async def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"position_flush_s": 60.0})


def north_of(point: GeoPoint, metres: float) -> GeoPoint:
    return GeoPoint(lat=point.lat + metres / _M_PER_DEG, lon=point.lon)


async def only_these_police_units(live: LiveServer, *, pinged_at_age_s: float = 1.0) -> None:
    """Every other police unit off duty; the two contenders where PostgreSQL's (stale
    flush) would rank the wrong one first. ``pinged_at_age_s``: the age of the winner's
    flushed position."""
    target = zone_point(ZONE)
    await live.db.execute(
        "UPDATE units SET status = 'off_duty' WHERE agency = 'police' AND id <> ALL($1)",
        [PINGED_CLOSE, FLUSHED_CLOSE],
    )
    for unit_id, point, age in (
        (FLUSHED_CLOSE, north_of(target, 20), 1.0),
        (PINGED_CLOSE, north_of(target, -1_000), pinged_at_age_s),
    ):
        await live.db.execute(
            "UPDATE units SET status = 'available', lat = $2, lon = $3,"
            " position_at = now() - make_interval(secs => $4) WHERE id = $1",
            unit_id,
            point.lat,
            point.lon,
            age,
        )


async def ping(mdt: Any, point: GeoPoint, *, age_s: float = 0.0, first: bool = True) -> None:
    """One AVL fix taken ``age_s`` ago; the pong of a ping sent after it says the fix
    was taken."""
    if first:
        await mdt.recv()  # the snapshot
    fix = {
        "type": "location",
        "lat": point.lat,
        "lon": point.lon,
        "accuracy_m": 5.0,
        "time": (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat(),
    }
    await mdt.send(json.dumps(fix))
    await mdt.send(json.dumps({"type": "ping"}))
    await receive_until(mdt, lambda m: m["type"] == "pong")


async def offered_unit(live: LiveServer, target: GeoPoint, trigger: str) -> str:
    answer = await live.post_panic(panic(target, trigger=trigger))
    assert answer.status_code == 202, answer.text
    unit: str = await live.db.fetchval(
        "SELECT unit_id FROM assignments WHERE incident_id = $1", answer.json()["incident_id"]
    )
    return unit


async def test_the_unit_that_pinged_next_to_the_panic_gets_the_offer(live: LiveServer) -> None:
    target = zone_point(ZONE)
    await only_these_police_units(live)
    async with live.mdt(PINGED_CLOSE) as close, live.mdt(FLUSHED_CLOSE) as far:
        await ping(close, north_of(target, 15))
        await ping(far, north_of(target, 1_000))
        unit = await offered_unit(live, target, "live-1")
    assert unit == PINGED_CLOSE
    # No flush happened: PostgreSQL still has the old places, the ranking did not.
    flushed = await live.db.fetchval("SELECT lat FROM units WHERE id = $1", PINGED_CLOSE)
    assert flushed == pytest.approx(north_of(target, -1_000).lat)


async def test_a_fresh_ping_trusts_a_unit_stale_in_postgresql(live: LiveServer) -> None:
    """Staleness (position_stale_s, 600 s) is judged by the newest fix's time: a unit
    whose flushed position is 11 minutes old but whose MDT pinged just now is available
    and ranked where it pinged."""
    target = zone_point(ZONE)
    await only_these_police_units(live, pinged_at_age_s=660.0)
    async with live.mdt(PINGED_CLOSE) as close:
        await ping(close, north_of(target, 15))
        unit = await offered_unit(live, target, "live-2")
    assert unit == PINGED_CLOSE


async def test_a_replayed_older_fix_does_not_move_the_unit_back(live: LiveServer) -> None:
    """An MDT that sends fixes it buffered in a tunnel after a newer one: the newest by
    the time it was taken stays, whatever the order of arrival."""
    target = zone_point(ZONE)
    await only_these_police_units(live)
    async with live.mdt(PINGED_CLOSE) as close:
        await ping(close, north_of(target, 15))
        await ping(close, north_of(target, 3_000), age_s=30.0, first=False)
        unit = await offered_unit(live, target, "live-3")
    assert unit == PINGED_CLOSE
    fixes = await UnitIndex(redis=live.services.redis, keys=live.services.keys).fixes(
        [PINGED_CLOSE]
    )
    assert fixes is not None
    assert fixes[PINGED_CLOSE].point.lat == pytest.approx(north_of(target, 15).lat)


async def test_without_redis_the_flushed_positions_rank(live: LiveServer) -> None:
    """Redis unreachable: no live fix can be read, and PostgreSQL's positions decide
    (no error, no empty fleet)."""
    target = zone_point(ZONE)
    await only_these_police_units(live)
    async with live.mdt(PINGED_CLOSE) as close:
        await ping(close, north_of(target, 15))
    dead = aioredis.from_url("redis://127.0.0.1:9", socket_connect_timeout=0.5)
    dispatcher = Dispatcher(
        schema=live.settings.db_schema,
        zones=ZoneDirectory(live.services.dispatcher.zones),
        incident_types=load_incident_types(),
        travel=TravelModel(),
        offer_timeout_s=30,
        position_stale_s=600,
        unit_index=UnitIndex(redis=dead, keys=live.services.keys),
    )
    try:
        async with live.db.acquire() as conn:
            units = await dispatcher.available_units(conn, agency="police")
            live_view = await live.services.dispatcher.available_units(conn, agency="police")
    finally:
        await dead.aclose()
    by_id = {u.id: u.position for u in units}
    assert set(by_id) == {PINGED_CLOSE, FLUSHED_CLOSE}
    assert by_id[PINGED_CLOSE].lat == pytest.approx(north_of(target, -1_000).lat)
    # The running server, which reads Redis, sees the ping.
    assert {u.id: u.position for u in live_view}[PINGED_CLOSE].lat == pytest.approx(
        north_of(target, 15).lat
    )

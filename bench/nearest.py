"""Candidate search latency with 1,000, 10,000 and 100,000 units spread over the city.

For each fleet size, the same random incident points are ranked two ways:

- index: the live unit index (Redis GEOSEARCH of the nearest 64 available units of the
  agency), those re-read from PostgreSQL, then ranked (what the dispatcher does);
- scan: every available unit of the agency read from PostgreSQL, then ranked (the
  fallback, and what the skeleton did).

Speed is worth nothing if the answer changes: for every query the unit the index path
ranks first is compared with the one the scan ranks first, and the run fails (exit
status 1) when any differs.

Run: .venv/bin/python bench/nearest.py [--sizes 1000 10000 100000] [--queries 300]
Uses ERSS_BENCH_DATABASE_URL / ERSS_BENCH_REDIS_URL (defaults: the local servers), in a
fresh schema and key prefix that are dropped at the end. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import redis.asyncio as aioredis

from dispatch.db import create_pool, migrate
from dispatch.demo import demo_zones, point_inside
from dispatch.engine import Candidate, Need, TravelModel, closest_idle
from dispatch.incident_types import load_incident_types
from dispatch.keys import RedisKeys
from dispatch.offers import Dispatcher
from dispatch.unit_index import UnitIndex
from dispatch.zonestore import ZoneDirectory, save_zones
from geo.zones import ZoneIndex

# What the dispatcher searches: the travel model's maximum radius.
RADIUS_M = TravelModel().max_radius_m


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _fill(conn: asyncpg.Connection, count: int, rng: random.Random) -> None:
    zones = demo_zones()
    rows = []
    for n in range(count):
        zone = rng.choice(zones)
        point = point_inside(zone, rng)
        rows.append((f"u{n}", f"U{n}", "police", zone.id, zone.id, point.lat, point.lon))
    await conn.execute("DELETE FROM units")
    await conn.copy_records_to_table(
        "units",
        records=rows,
        columns=["id", "callsign", "agency", "home_zone_id", "zone_id", "lat", "lon"],
    )
    await conn.execute("UPDATE units SET position_at = now(), status = 'available'")


async def _time(queries: int, run: Callable[[int], Awaitable[int]]) -> tuple[list[float], int]:
    samples: list[float] = []
    found = 0
    for q in range(queries):
        start = time.perf_counter()
        found += await run(q)
        samples.append((time.perf_counter() - start) * 1000)
    return samples, found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    db_url = os.environ.get("ERSS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("ERSS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    tag = uuid.uuid4().hex[:8]
    schema, prefix = f"bench_nearest_{tag}", f"bench_nearest_{tag}:"
    pool = await create_pool(db_url, schema, min_size=1, max_size=2)
    redis = aioredis.from_url(redis_url)
    keys = RedisKeys(prefix)
    index = UnitIndex(redis=redis, keys=keys)
    zones = demo_zones()
    dispatcher = Dispatcher(
        schema=schema,
        zones=ZoneDirectory(ZoneIndex(zones)),
        incident_types=load_incident_types(),
        travel=TravelModel(),
        offer_timeout_s=30,
        position_stale_s=600,
        unit_index=index,
    )
    rng = random.Random(args.seed)
    points = [point_inside(rng.choice(zones), rng) for _ in range(args.queries)]
    results: dict[int, dict[str, list[float]]] = {}
    differ: list[str] = []
    try:
        async with pool.acquire() as conn:
            await migrate(conn, schema)
            await save_zones(conn, zones)
            for size in args.sizes:
                await _fill(conn, size, random.Random(args.seed + size))
                await conn.execute("ANALYZE units")
                await index.rebuild(conn)

                def need(q: int) -> Need:
                    point = points[q]
                    zone = dispatcher.locate(point)
                    return Need(
                        point=point,
                        zone_id=zone.id if zone else None,
                        neighbour_zone_ids=frozenset(
                            dispatcher.zones.neighbours(zone.id) if zone else ()
                        ),
                        agency="police",
                    )

                async def ranked_by_index(
                    q: int, conn: asyncpg.Connection = conn
                ) -> list[Candidate]:
                    ids = await index.nearest(points[q], "police", radius_m=RADIUS_M, count=64)
                    units = await dispatcher.available_units(conn, agency="police", among=ids)
                    return closest_idle(need(q), units, TravelModel())

                async def ranked_by_scan(
                    q: int, conn: asyncpg.Connection = conn
                ) -> list[Candidate]:
                    units = await dispatcher.available_units(conn, agency="police")
                    return closest_idle(need(q), units, TravelModel())

                async def by_index(q: int) -> int:
                    return len(await ranked_by_index(q))

                async def by_scan(q: int) -> int:
                    return len(await ranked_by_scan(q))

                await by_index(0)
                await by_scan(0)  # warm both paths (prepared statements, caches)
                index_ms, found = await _time(args.queries, by_index)
                scan_queries = args.queries if size <= 10_000 else max(20, args.queries // 10)
                scan_ms, _ = await _time(scan_queries, by_scan)
                results[size] = {"index": index_ms, "scan": scan_ms}
                for q in range(args.queries):
                    first = [(await ranked(q))[:1] for ranked in (ranked_by_index, ranked_by_scan)]
                    chosen = [c[0].unit_id if c else None for c in first]
                    if chosen[0] != chosen[1]:
                        differ.append(f"{size} units, query {q}: index {first[0]}, scan {first[1]}")
                print(
                    f"{size:>7} units  index p50 {_percentile(index_ms, 0.5):7.2f} ms"
                    f" p99 {_percentile(index_ms, 0.99):7.2f} ms"
                    f"   scan p50 {_percentile(scan_ms, 0.5):8.2f} ms"
                    f" p99 {_percentile(scan_ms, 0.99):8.2f} ms"
                    f"   (candidates per query {found / args.queries:.0f})",
                    flush=True,
                )
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        stale = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        if stale:
            await redis.delete(*stale)
        await redis.aclose()
        await pool.close()
    small, large = min(results), max(results)
    if small != large:
        for path in ("index", "scan"):
            ratio = statistics.median(results[large][path]) / statistics.median(
                results[small][path]
            )
            print(f"{path}: p50 at {large} units / p50 at {small} units = {ratio:.1f}x")
    total = args.queries * len(args.sizes)
    print(f"same unit chosen by index and scan: {total - len(differ)}/{total} queries")
    for line in differ[:10]:
        print("  differs:", line)
    if differ:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())

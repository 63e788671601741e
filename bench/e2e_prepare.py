"""Prepare a full-path run's schema with extra police units, before its server starts.

Run with the tree under test first on PYTHONPATH, so that its own migrations make the
schema:

    PYTHONPATH=<tree> python bench/e2e_prepare.py --database-url URL --schema S \\
        --per-zone 8 --out units.json

The demo city has two police units per zone (34). The full-path mode's crews finish
every job at once, but a unit is still busy from its offer until its ``available`` is
applied; at a few hundred incidents a second the demo's 34 would run out and the figure
would measure unit supply, not the server. The units written here are police, spread
over the demo zones at seeded random points, available, with fresh tokens (written to
``--out``, never printed). The server, started afterwards with ``--demo``, adds the
demo city's own units and builds its live index of available units from this table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from datetime import UTC, datetime
from pathlib import Path

from dispatch.auth import hash_token, new_secret
from dispatch.db import create_pool, migrate
from dispatch.demo import demo_zones, point_inside
from dispatch.zonestore import save_zones

# The units columns a bench fleet is copied in with (this script and bench/fanout_fleet.py).
UNIT_COPY_COLUMNS = [
    "id",
    "callsign",
    "agency",
    "status",
    "home_zone_id",
    "zone_id",
    "lat",
    "lon",
    "position_at",
    "token_hash",
]


async def prepare(database_url: str, schema: str, per_zone: int, seed: int) -> dict[str, str]:
    rng = random.Random(seed)
    zones = sorted(demo_zones(), key=lambda z: z.id)
    now = datetime.now(UTC)
    tokens: dict[str, str] = {}
    records = []
    for zone in zones:
        for n in range(1, per_zone + 1):
            unit_id = f"bench-{zone.id}-pcr-{n}"
            point = point_inside(zone, rng)
            tokens[unit_id] = new_secret()
            records.append(
                (
                    unit_id,
                    f"BENCH {zone.id} {n}",
                    "police",
                    "available",
                    zone.id,
                    zone.id,
                    point.lat,
                    point.lon,
                    now,
                    hash_token(tokens[unit_id]),
                )
            )
    pool = await create_pool(database_url, schema, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await migrate(conn, schema)
            await save_zones(conn, zones)
            if records:
                await conn.copy_records_to_table(
                    "units",
                    schema_name=schema,
                    columns=UNIT_COPY_COLUMNS,
                    records=records,
                )
    finally:
        await pool.close()
    return tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--per-zone", type=int, required=True)
    parser.add_argument("--seed", type=int, default=112)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    tokens = asyncio.run(prepare(args.database_url, args.schema, args.per_zone, args.seed))
    args.out.write_text(json.dumps(tokens))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

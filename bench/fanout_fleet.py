"""The fleet bench/fanout.py connects: units with MDT tokens placed in the demo city, the
schema they are written into before the server starts, the demo units put off duty,
and the panic locations near on-duty units."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from e2e import Storage
from e2e_prepare import UNIT_COPY_COLUMNS

from dispatch.auth import hash_token, new_secret
from dispatch.db import create_pool, migrate
from dispatch.demo import demo_zones, point_inside, save_zones
from geo.points import GeoPoint
from geo.zones import ZoneIndex


@dataclass(frozen=True, slots=True)
class FleetUnit:
    """A benchmark unit: placed inside a demo zone, with its own MDT token."""

    id: str
    agency: str
    zone_id: str
    lat: float
    lon: float
    status: str
    token: str


def make_fleet(count: int, available_share: float, seed: int) -> list[FleetUnit]:
    """``count`` units spread evenly over the demo zones; two police to one ambulance,
    as in the demo fleet; ``available_share`` of them on duty."""
    rng = random.Random(seed)
    zones = sorted(demo_zones(), key=lambda z: z.id)
    fleet = []
    for n in range(count):
        zone = zones[n % len(zones)]
        point = point_inside(zone, rng)
        fleet.append(
            FleetUnit(
                id=f"fan-{n:05d}",
                agency="ambulance" if n % 3 == 2 else "police",
                zone_id=zone.id,
                lat=point.lat,
                lon=point.lon,
                status="available" if rng.random() < available_share else "off_duty",
                token=new_secret(),
            )
        )
    return fleet


async def prepare_schema(
    storage: Storage, fleet: list[FleetUnit], console_tokens: dict[str, str]
) -> None:
    """Migrate this run's schema and write the zones, units and console operators into
    it before the server starts. The server then builds its live index of available
    units (Redis) from PostgreSQL when its relay takes the lead at start-up, as it would
    over a real fleet; units added behind a running server's back would be missing
    from that index until their status changed. ``--demo`` then adds the demo city's
    own units and credentials on top (existing rows are left alone)."""
    now = datetime.now(UTC)
    # The server's own pool factory: its connections encode JSON columns (zone shapes).
    pool = await create_pool(storage.database_url, storage.schema, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await migrate(conn, storage.schema)
            await save_zones(conn, demo_zones())
            await conn.copy_records_to_table(
                "units",
                schema_name=storage.schema,
                columns=UNIT_COPY_COLUMNS,
                records=[
                    (
                        u.id,
                        u.id.upper(),
                        u.agency,
                        u.status,
                        u.zone_id,
                        u.zone_id,
                        u.lat,
                        u.lon,
                        now,
                        hash_token(u.token),
                    )
                    for u in fleet
                ],
            )
            # zones NULL: a city-wide console sees every incident.created.
            await conn.copy_records_to_table(
                "operators",
                schema_name=storage.schema,
                columns=["name", "token_hash", "zones"],
                records=[(name, hash_token(t), None) for name, t in console_tokens.items()],
            )
    finally:
        await pool.close()


async def retire_demo_units(base_url: str, operator_token: str, unit_ids: list[str]) -> None:
    """The demo's own units have no MDT connected here: an operator puts them off duty
    through the API (events, so the live index follows), so that no offer goes to a
    unit nobody listens for."""
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {operator_token}"},
        timeout=30,
        trust_env=False,
    ) as http:
        for unit_id in unit_ids:
            response = await http.post(
                f"/v1/units/{unit_id}/status",
                json={"status": "off_duty", "reason": "fan-out benchmark: no MDT connected"},
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"could not put demo unit {unit_id} off duty: {response.status_code}"
                    f" {response.text[:200]}"
                )


def incident_points(fleet: list[FleetUnit], count: int, seed: int) -> list[GeoPoint]:
    """Panic locations a short way (up to ~150 m) from random on-duty police units, so
    every panic has a unit close by, as in a city where the fleet covers the ground."""
    rng = random.Random(seed)
    index = ZoneIndex(demo_zones())
    on_duty = [u for u in fleet if u.status == "available" and u.agency == "police"]
    if not on_duty:
        raise RuntimeError("no on-duty police unit: raise --available-share or --mdts")
    points = []
    for _ in range(count):
        unit = rng.choice(on_duty)
        point = GeoPoint(
            lat=unit.lat + rng.uniform(-0.0013, 0.0013), lon=unit.lon + rng.uniform(-0.0013, 0.0013)
        )
        # A point pushed outside every jurisdiction would be escalated, not offered.
        points.append(point if index.zone_of(point) else GeoPoint(lat=unit.lat, lon=unit.lon))
    return points

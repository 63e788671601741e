"""The demo city: Bhubaneswar's real police-station jurisdictions with ERVs in each.

Zones come from config/bhubaneswar_police_jurisdiction.geojson (DataMeet, CC BY-SA 2.5
India; see config/README.md). Units are placed at seeded random points inside each zone,
so every run of the demo puts them in the same places.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg
from shapely.geometry import Point as ShapelyPoint

from dispatch.auth import hash_token, new_secret
from dispatch.volunteers.demo import demo_volunteers, load_demo_volunteers
from dispatch.zonestore import save_zones
from geo.points import GeoPoint
from geo.zones import Zone, ZoneIndex, zones_from_geojson

DEMO_GEOJSON = "bhubaneswar_police_jurisdiction.geojson"
GATEWAYS = (("telecom", "telecom"), ("sms", "sms"), ("panic", "panic"), ("vehicle", "vehicle"))
# The city-wide dispatcher and supervisor, and a desk for the northern jurisdictions.
OPERATORS: dict[str, list[str] | None] = {
    "dispatcher": None,
    "supervisor": None,
    "north-desk": ["chandaka", "chandrasekharpur", "infocity", "mancheswar", "nandankanan"],
}
# Per zone: two police control-room vehicles (PCR) and one ambulance.
UNIT_PLAN = (("police", "pcr", 2), ("ambulance", "amb", 1))
# The first PCR of every zone carries a woman officer (women-in-distress incidents need one).
CAPABILITIES = {"pcr-1": ("woman_officer",)}


@dataclass(frozen=True, slots=True)
class DemoUnit:
    """An ERV of the demo fleet."""

    id: str
    callsign: str
    agency: str
    zone_id: str
    position: GeoPoint
    capabilities: tuple[str, ...] = ()


def demo_zones() -> list[Zone]:
    """The demo city's jurisdictions."""
    text = resources.files("config").joinpath(DEMO_GEOJSON).read_text("utf-8")
    return zones_from_geojson(json.loads(text))


def point_inside(zone: Zone, rng: random.Random) -> GeoPoint:
    """A random point strictly inside the zone (rejection sampling in its bounds)."""
    min_x, min_y, max_x, max_y = zone.geometry.bounds
    for _ in range(10_000):
        candidate = ShapelyPoint(rng.uniform(min_x, max_x), rng.uniform(min_y, max_y))
        if zone.geometry.contains(candidate):
            return GeoPoint.from_shapely(candidate)
    return GeoPoint.from_shapely(zone.geometry.representative_point())


def demo_fleet(zones: list[Zone]) -> list[DemoUnit]:
    """The demo's units, deterministically placed inside their zones."""
    units: list[DemoUnit] = []
    for zone in sorted(zones, key=lambda z: z.id):
        rng = random.Random(f"erss-demo:{zone.id}")  # noqa: S311 (placement, not security)
        for agency, code, count in UNIT_PLAN:
            for n in range(1, count + 1):
                units.append(
                    DemoUnit(
                        id=f"{zone.id}-{code}-{n}",
                        callsign=f"{code.upper()} {zone.name.removesuffix(' Police Station')} {n}",
                        agency=agency,
                        zone_id=zone.id,
                        position=point_inside(zone, rng),
                        capabilities=CAPABILITIES.get(f"{code}-{n}", ()),
                    )
                )
    return units


async def load_demo(conn: asyncpg.Connection, *, base_url: str) -> dict[str, Any]:
    """Load the demo city and its credentials; returns demo-credentials.json.

    Existing units keep their status and position (a restart does not teleport the
    fleet). Tokens are derived from the database's demo seed, so every load on the same
    database (a restart, a second instance) gives the same tokens: open consoles and MDTs
    stay logged in.
    """
    zones = demo_zones()
    index = ZoneIndex(zones)
    credentials: dict[str, Any] = {
        "base_url": base_url,
        "gateways": {},
        "operators": {},
        "units": {},
        "volunteers": {},
    }
    async with conn.transaction():
        seed = await _demo_seed(conn)
        await save_zones(conn, zones)
        for gateway_id, channel in GATEWAYS:
            await conn.execute(
                "INSERT INTO gateways (id, channel, secrets) VALUES ($1, $2, $3)"
                " ON CONFLICT (id) DO NOTHING",
                gateway_id,
                channel,
                [new_secret()],
            )
            # The newest secret is the one a demo client should sign with.
            credentials["gateways"][gateway_id] = await conn.fetchval(
                "SELECT secrets[cardinality(secrets)] FROM gateways WHERE id = $1", gateway_id
            )
        for name, desk in OPERATORS.items():
            token = demo_token(seed, "operator", name)
            await conn.execute(
                "INSERT INTO operators (name, token_hash, zones) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash,"
                " zones = excluded.zones",
                name,
                hash_token(token),
                desk,
            )
            credentials["operators"][name] = token
        for unit in demo_fleet(zones):
            token = demo_token(seed, "unit", unit.id)
            zone = index.zone_of(unit.position)
            await conn.execute(
                "INSERT INTO units (id, callsign, agency, status, home_zone_id, zone_id, lat, lon,"
                " position_at, token_hash, capabilities) VALUES ($1, $2, $3, 'available', $4, $5,"
                " $6, $7, now(), $8, $9) ON CONFLICT (id) DO UPDATE SET"
                " token_hash = excluded.token_hash, capabilities = excluded.capabilities",
                unit.id,
                unit.callsign,
                unit.agency,
                unit.zone_id,
                zone.id if zone else unit.zone_id,
                unit.position.lat,
                unit.position.lon,
                hash_token(token),
                list(unit.capabilities),
            )
            credentials["units"][unit.id] = token
        credentials["volunteers"] = await load_demo_volunteers(
            conn,
            demo_volunteers(zones, point_inside),
            lambda volunteer_id: demo_token(seed, "volunteer", volunteer_id),
        )
    return credentials


def demo_token(seed: str, kind: str, name: str) -> str:
    """The demo token of one operator or unit: the same for the same seed."""
    mac = hmac.new(seed.encode(), f"{kind}:{name}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


async def _demo_seed(conn: asyncpg.Connection) -> str:
    # Two instances loading at once: the first insert wins, both read the same seed.
    await conn.execute(
        "INSERT INTO demo_seed (seed) VALUES ($1) ON CONFLICT (id) DO NOTHING", new_secret()
    )
    seed: str = await conn.fetchval("SELECT seed FROM demo_seed")
    return seed

"""Zones in PostgreSQL, and the index every instance keeps of them.

Loading a city (`erss zones load FILE`) upserts the polygons; each instance notices the
change within ``refresh_s`` and swaps in a new index. Incidents keep the zone id they
were placed in, so a reload never breaks an open incident.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg
from shapely.geometry import mapping

from dispatch import readmodels
from dispatch.transient import OutageLog
from geo.zones import Zone, ZoneIndex, zones_from_geojson

log = logging.getLogger(__name__)


async def save_zones(conn: asyncpg.Connection, zones: list[Zone]) -> None:
    """Insert or update zones (their geometry as GeoJSON); others are left as they are."""
    await conn.executemany(
        "INSERT INTO zones (id, name, geometry) VALUES ($1, $2, $3)"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name, geometry = excluded.geometry,"
        " updated_at = now()",
        [(z.id, z.name, mapping(z.geometry)) for z in zones],
    )


async def load_zone_index(pool: asyncpg.Pool) -> ZoneIndex | None:
    """The zones stored in PostgreSQL as an index, or None when none are loaded."""
    collection = await readmodels.zones_geojson(pool)
    if not collection["features"]:
        return None
    return ZoneIndex(zones_from_geojson(collection))


class ZoneDirectory:
    """The current zone index; replaced as a whole when the stored zones change."""

    def __init__(self, index: ZoneIndex, *, pool: asyncpg.Pool | None = None) -> None:
        self.index = index
        self._pool = pool
        self._version: datetime | None = None

    async def refresh(self) -> bool:
        """Reload if the stored zones changed since the last look; True if it did."""
        if self._pool is None:
            return False
        version = await self._pool.fetchval("SELECT max(updated_at) FROM zones")
        if version == self._version:
            return False
        index = await load_zone_index(self._pool)
        if index is None:
            return False
        self.index, self._version = index, version
        return True

    async def run(self, refresh_s: float) -> None:
        """Look for reloaded zones forever; an outage is logged once, not every tick."""
        outage = OutageLog(log, "zone refresh")
        while True:
            try:
                if await self.refresh():
                    log.info("zone index reloaded: %d zones", len(self.index))
                outage.succeeded()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                outage.failed(err)
            await asyncio.sleep(refresh_s)

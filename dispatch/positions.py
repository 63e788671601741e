"""Live unit positions from MDT pings, without a PostgreSQL write per ping.

MDTs ping every few seconds. Each ping updates this instance's in-memory latest fix and
the Redis GEO index at once; every ``flush_s`` the latest fix of each unit that moved is
written to PostgreSQL in one batch (the last known position, its zone, and one sampled
track row). A crash loses at most the last ``flush_s`` of track, never a unit.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dispatch.keys import RedisKeys
from dispatch.zonestore import ZoneDirectory
from geo.location import Location

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fix:
    """A unit's latest reported position."""

    location: Location
    at: datetime


class PositionTracker:
    """Takes pings; keeps Redis current and PostgreSQL sampled."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        keys: RedisKeys,
        zones: ZoneDirectory,
        flush_s: float,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._keys = keys
        self._zones = zones
        self._flush_s = flush_s
        self._pending: dict[str, Fix] = {}

    async def record(self, unit_id: str, location: Location) -> None:
        """Take one ping (already validated)."""
        at = location.time or datetime.now(UTC)
        self._pending[unit_id] = Fix(location, at)
        try:
            await self._redis.geoadd(
                self._keys.unit_positions,
                (location.point.lon, location.point.lat, unit_id),
            )
        except (OSError, RedisError):
            # The index is rebuilt from the next ping; PostgreSQL still gets the flush.
            log.warning("could not update the unit position index for %s", unit_id)

    async def run(self) -> None:
        """Flush forever; a last flush happens on cancellation."""
        try:
            while True:
                await asyncio.sleep(self._flush_s)
                try:
                    await self.flush()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    log.exception("position flush failed; retrying")
        finally:
            if self._pending:
                try:
                    await asyncio.shield(self.flush())
                except Exception:
                    log.exception("final position flush failed")

    async def flush(self) -> int:
        """Write the latest fix of every unit that pinged since the last flush."""
        batch, self._pending = self._pending, {}
        if not batch:
            return 0
        rows = []
        for unit_id, fix in batch.items():
            zone = self._zones.index.zone_of(fix.location.point)
            rows.append(
                (
                    unit_id,
                    fix.location.point.lat,
                    fix.location.point.lon,
                    fix.at,
                    zone.id if zone else None,
                    fix.location.radius_m,
                )
            )
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                # Only move forward in time: a late flush from another instance must not
                # put an older fix over a newer one.
                await conn.executemany(
                    "UPDATE units SET lat = $2, lon = $3, position_at = $4, zone_id = $5"
                    " WHERE id = $1 AND (position_at IS NULL OR position_at < $4)",
                    [r[:5] for r in rows],
                )
                await conn.executemany(
                    "INSERT INTO unit_track (unit_id, lat, lon, at, accuracy_m)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    [(r[0], r[1], r[2], r[3], r[5]) for r in rows],
                )
        except BaseException:
            # Put them back unless newer fixes arrived meanwhile.
            for unit_id, fix in batch.items():
                self._pending.setdefault(unit_id, fix)
            raise
        return len(rows)

"""Live unit positions from MDT pings, without a PostgreSQL write per ping.

MDTs ping every few seconds. Each ping updates this instance's in-memory latest fix and
the Redis GEO index at once; every ``flush_s`` the latest fix of each unit that moved is
written to PostgreSQL in one batch (the last known position, its zone, and one sampled
track row). A crash loses at most the last ``flush_s`` of track, never a unit. Every
``publish_s`` the units that moved are also published, in one message, for the consoles
of every instance (dispatch/hub.py): positions are not events, and are not replayed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dispatch.engine import LiveFix
from dispatch.events import EventType, append_event
from dispatch.keys import RedisKeys
from dispatch.transient import OutageLog
from dispatch.unit_index import SET_NEWER_FIX, UnitIndex, encode_fix
from dispatch.zonestore import ZoneDirectory
from geo.geofence import Crossing, crossing
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
        schema: str,
        geofence_hysteresis_m: float = 200.0,
        unit_index: UnitIndex | None = None,
        publish_s: float = 1.0,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._keys = keys
        self._zones = zones
        self._flush_s = flush_s
        self._schema = schema
        self._hysteresis_m = geofence_hysteresis_m
        self._unit_index = unit_index
        self._pending: dict[str, Fix] = {}
        self._publish_s = publish_s
        self._unpublished: dict[str, Fix] = {}
        # Pings arrive by the thousand: an outage is one line when it starts and one
        # when it ends, per path, not one per ping or tick.
        self._index_outage = OutageLog(log, "position index")
        self._flush_outage = OutageLog(log, "position flush")
        self._publish_outage = OutageLog(log, "position publisher")

    async def record(self, unit_id: str, agency: str, location: Location) -> None:
        """Take one ping (already validated) of a unit of ``agency``."""
        now = datetime.now(UTC)
        # A device clock ahead of ours would pin position_at in the future, and every
        # later (truthful) fix would be refused as older: never later than now.
        at = min(location.time, now) if location.time else now
        fix = Fix(location, at)
        self._pending[unit_id] = fix
        self._unpublished[unit_id] = fix
        try:
            # The map's GEO set and the newest fix with its time (what ranking lays over
            # PostgreSQL's flushed copy), in one round trip.
            pipe = self._redis.pipeline(transaction=False)
            pipe.geoadd(
                self._keys.unit_positions,
                (location.point.lon, location.point.lat, unit_id),
            )
            stamp = at.timestamp()
            # EVAL, not a registered script: a pipeline with scripts asks SCRIPT EXISTS
            # first, a second round trip per ping. Redis caches the compiled body.
            pipe.eval(
                SET_NEWER_FIX,
                1,
                self._keys.unit_fixes,
                unit_id,
                encode_fix(LiveFix(location.point, stamp)),
                stamp,
            )
            await pipe.execute()
        except (OSError, RedisError) as err:
            # The index is rebuilt from the next ping; PostgreSQL still gets the flush.
            self._index_outage.failed(err)
        else:
            self._index_outage.succeeded()
        if self._unit_index is not None:
            await self._unit_index.moved(unit_id, agency, location.point)

    async def run(self) -> None:
        """Flush forever; a last flush happens on cancellation."""
        try:
            while True:
                await asyncio.sleep(self._flush_s)
                try:
                    await self.flush()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                    self._flush_outage.failed(err)
                else:
                    self._flush_outage.succeeded()
        finally:
            if self._pending:
                try:
                    await asyncio.shield(self.flush())
                except Exception:
                    log.exception("final position flush failed")

    async def run_publisher(self) -> None:
        """Publish forever; a failed publish is dropped (the next move is published)."""
        while True:
            await asyncio.sleep(self._publish_s)
            try:
                await self.publish()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # consoles get the next batch; never stop publishing
                self._publish_outage.failed(err)
            else:
                self._publish_outage.succeeded()

    async def publish(self) -> int:
        """Publish the latest fix of every unit that pinged since the last publish."""
        batch, self._unpublished = self._unpublished, {}
        if not batch:
            return 0
        index = self._zones.index
        units = []
        for unit_id, fix in batch.items():
            zone = index.zone_of(fix.location.point)
            units.append(
                {
                    "id": unit_id,
                    "lat": fix.location.point.lat,
                    "lon": fix.location.point.lon,
                    "zone_id": zone.id if zone else None,
                    "at": fix.at.isoformat(),
                }
            )
        payload = json.dumps({"units": units}, separators=(",", ":"))
        await self._redis.publish(self._keys.positions_channel, payload)
        return len(units)

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
                await self._geofence(conn, batch)
        except BaseException:
            # Put them back unless newer fixes arrived meanwhile.
            for unit_id, fix in batch.items():
                self._pending.setdefault(unit_id, fix)
            raise
        return len(rows)

    async def _geofence(self, conn: asyncpg.Connection, batch: dict[str, Fix]) -> None:
        """Alert consoles when a unit on patrol leaves its home zone, or comes back."""
        index = self._zones.index
        rows = await conn.fetch(
            "SELECT id, home_zone_id, outside_home FROM units"
            " WHERE id = ANY($1::text[]) AND status = 'available' AND home_zone_id IS NOT NULL",
            list(batch),
        )
        for row in rows:
            home = index.get(row["home_zone_id"])
            if home is None:
                continue
            point = batch[row["id"]].location.point
            outside_m = index.distance_to(home, point)
            change = crossing(
                distance_outside_m=outside_m,
                was_outside=row["outside_home"],
                hysteresis_m=self._hysteresis_m,
            )
            if change is None:
                continue
            await conn.execute(
                "UPDATE units SET outside_home = $2 WHERE id = $1",
                row["id"],
                change is Crossing.LEFT,
            )
            now_in = index.zone_of(point)
            await append_event(
                conn,
                self._schema,
                EventType.UNIT_LEFT_HOME_ZONE
                if change is Crossing.LEFT
                else EventType.UNIT_RETURNED_HOME_ZONE,
                actor=f"unit:{row['id']}",
                unit_id=row["id"],
                data={
                    "home_zone_id": home.id,
                    "zone_id": now_in.id if now_in else None,
                    "distance_outside_m": round(outside_m),
                    "location": {"lat": point.lat, "lon": point.lon},
                },
            )

"""Live unit positions from MDT pings, without a round trip per ping.

MDTs ping every few seconds, tens of thousands of them. A ping only notes the unit's
newest fix in memory (:meth:`PositionTracker.take`: no I/O, no await). Every
``tick_s`` (50 ms) the fixes taken since the last tick go to Redis in one pipeline of
a few commands whatever their number: the map's GEO set, the newest-fix hash ranking
lays over PostgreSQL's copy (a fix never replaces a newer one, in this batch or in
Redis), and the available-units index of each agency. Every ``flush_s`` the latest fix
of each unit that moved is written to PostgreSQL in one statement per table (the last
known position, its zone, and one sampled track row). A crash loses at most the last
``flush_s`` of track, never a unit. Every ``publish_s`` the units that moved are also
published, in one message, for the consoles of every instance (dispatch/hub.py):
positions are not events, and are not replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from dispatch.unit_index import UnitIndex, encode_fix
from dispatch.zonestore import ZoneDirectory
from geo.geofence import Crossing, crossing
from geo.location import Location

log = logging.getLogger(__name__)

# dispatch.unit_index.SET_NEWER_FIX for a whole tick: ARGV is (unit, value, time)
# triples; each unit's fix is stored only if it is newer than the one kept, so an MDT
# that replays positions it buffered in a tunnel never puts an old place over a new one.
SET_NEWER_FIXES = """
local stored = 0
for i = 1, #ARGV, 3 do
  local kept = redis.call('HGET', KEYS[1], ARGV[i])
  local at = kept and tonumber(string.match(kept, '(%S+)$'))
  if not (at and at >= tonumber(ARGV[i + 2])) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    stored = stored + 1
  end
end
return stored
"""


# Units whose zone is looked up between two yields to the loop during a flush.
_FLUSH_SLICE = 1000


@dataclass(frozen=True, slots=True)
class Fix:
    """A unit's latest reported position."""

    location: Location
    at: datetime


def newer(kept: Fix | None, fix: Fix) -> bool:
    """Whether ``fix`` replaces ``kept``: the newest by the time it was taken wins (the
    same rule as SET_NEWER_FIXES; on a tie the one kept stays)."""
    return kept is None or fix.at > kept.at


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
        tick_s: float = 0.05,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._keys = keys
        self._zones = zones
        self._flush_s = flush_s
        self._schema = schema
        self._hysteresis_m = geofence_hysteresis_m
        self._unit_index = unit_index
        self._tick_s = tick_s
        self._pending: dict[str, Fix] = {}
        self._publish_s = publish_s
        self._unpublished: dict[str, Fix] = {}
        self._zoned: dict[str, tuple[Fix, str | None]] = {}
        # The fixes of this tick, newest per unit, with the unit's agency.
        self._tick: dict[str, tuple[str, Fix]] = {}
        # Done when the tick that carries the fixes in ``_tick`` has been written.
        self._next_written: asyncio.Future[None] | None = None
        self._writing: asyncio.Future[None] | None = None
        # Pings arrive by the thousand: an outage is one line when it starts and one
        # when it ends, per path, not one per ping or tick.
        self._index_outage = OutageLog(log, "position index")
        self._flush_outage = OutageLog(log, "position flush")
        self._publish_outage = OutageLog(log, "position publisher")

    def take(self, unit_id: str, agency: str, location: Location) -> None:
        """Note one ping (already validated) of a unit of ``agency``; no I/O: the next
        tick writes it to Redis, the next flush to PostgreSQL."""
        now = datetime.now(UTC)
        # A device clock ahead of ours would pin position_at in the future, and every
        # later (truthful) fix would be refused as older: never later than now.
        at = min(location.time, now) if location.time else now
        fix = Fix(location, at)
        self._unpublished[unit_id] = fix  # consoles: the last one sent, as before
        if newer(self._pending.get(unit_id), fix):
            self._pending[unit_id] = fix
        kept = self._tick.get(unit_id)
        if newer(kept[1] if kept else None, fix):
            self._tick[unit_id] = (agency, fix)

    async def record(self, unit_id: str, agency: str, location: Location) -> None:
        """Take one ping and wait until it is in Redis (or its write failed)."""
        self.take(unit_id, agency, location)
        await self.settled()

    async def settled(self) -> None:
        """Wait until every fix taken so far has been written to Redis, or failed to be
        (an MDT's ``pong`` follows its earlier pings this way)."""
        if self._tick:
            if self._next_written is None:
                self._next_written = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._next_written)
        elif self._writing is not None:
            await asyncio.shield(self._writing)

    async def write_tick(self) -> int:
        """Write this tick's fixes to Redis in one pipeline; returns how many units."""
        batch, self._tick = self._tick, {}
        written, self._next_written = self._next_written, None
        self._writing = written
        try:
            if batch:
                await self._write(batch)
            return len(batch)
        finally:
            self._writing = None
            if written is not None and not written.done():
                written.set_result(None)

    async def _write(self, batch: dict[str, tuple[str, Fix]]) -> None:
        positions: list[str | float] = []
        fixes: list[str | float] = []
        moved: dict[str, list[str | float]] = {}
        for unit_id, (agency, fix) in batch.items():
            point = fix.location.point
            stamp = fix.at.timestamp()
            positions += (point.lon, point.lat, unit_id)
            fixes += (unit_id, encode_fix(LiveFix(point, stamp)), stamp)
            moved.setdefault(agency, []).extend((point.lon, point.lat, unit_id))
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.geoadd(self._keys.unit_positions, positions)
            # EVAL, not a registered script: a pipeline with scripts asks SCRIPT EXISTS
            # first, a second round trip. Redis caches the compiled body.
            pipe.eval(SET_NEWER_FIXES, 1, self._keys.unit_fixes, *fixes)
            if self._unit_index is not None:
                # XX: a ping moves a unit already in the index, never adds a busy one.
                for agency, values in moved.items():
                    pipe.geoadd(self._keys.available_units(agency), values, xx=True)
            await pipe.execute()
        except (OSError, RedisError) as err:
            # The index is rebuilt from the next ping; PostgreSQL still gets the flush.
            self._index_outage.failed(err)
        else:
            self._index_outage.succeeded()

    async def run(self) -> None:
        """Write ticks to Redis and flush to PostgreSQL forever; a last tick and a last
        flush happen on cancellation."""
        ticks = asyncio.create_task(self._run_ticks())
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
            ticks.cancel()
            await asyncio.gather(ticks, return_exceptions=True)
            if self._pending:
                try:
                    await asyncio.shield(self.flush())
                except Exception:
                    log.exception("final position flush failed")

    async def _run_ticks(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._tick_s)
                try:
                    await self.write_tick()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug in one tick must not stop the next
                    log.exception("position tick failed")
        finally:
            if self._tick:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.write_tick())

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
        units = []
        for n, (unit_id, fix) in enumerate(batch.items()):
            if n and n % _FLUSH_SLICE == 0:
                await asyncio.sleep(0)
            units.append(
                {
                    "id": unit_id,
                    "lat": fix.location.point.lat,
                    "lon": fix.location.point.lon,
                    "zone_id": self._zone_id(unit_id, fix),
                    "at": fix.at.isoformat(),
                }
            )
        payload = json.dumps({"units": units}, separators=(",", ":"))
        await self._redis.publish(self._keys.positions_channel, payload)
        return len(units)

    def _zone_id(self, unit_id: str, fix: Fix) -> str | None:
        """The zone a fix is in, looked up once per fix (publish and flush share it)."""
        cached = self._zoned.get(unit_id)
        if cached is not None and cached[0] is fix:
            return cached[1]
        zone = self._zones.index.zone_of(fix.location.point)
        zone_id = zone.id if zone else None
        self._zoned[unit_id] = (fix, zone_id)
        return zone_id

    async def flush(self) -> int:
        """Write the latest fix of every unit that pinged since the last flush."""
        batch, self._pending = self._pending, {}
        if not batch:
            return 0
        ids, lats, lons, ats, zone_ids, accuracies = [], [], [], [], [], []
        # Sorted: two instances flushing overlapping units lock rows in the same order.
        for n, unit_id in enumerate(sorted(batch)):
            if n and n % _FLUSH_SLICE == 0:
                await asyncio.sleep(0)  # thousands of zone lookups: let sockets run
            fix = batch[unit_id]
            ids.append(unit_id)
            lats.append(fix.location.point.lat)
            lons.append(fix.location.point.lon)
            ats.append(fix.at)
            zone_ids.append(self._zone_id(unit_id, fix))
            accuracies.append(fix.location.radius_m)
        try:
            async with self._pool.acquire() as conn:
                # One statement per table, whatever the number of units (arrays, not a
                # round of binds per row), each its own short transaction. Only move
                # forward in time: a late flush from another instance must not put an
                # older fix over a newer one. A unit row a dispatch holds locked is
                # skipped, never waited for: the flush neither deadlocks with nor slows
                # an offer, and that unit's newest fix stays in Redis (ranking reads it
                # there) until its next ping's flush.
                await conn.execute(
                    "WITH f AS (SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[],"
                    " $4::timestamptz[], $5::text[]) AS f(id, lat, lon, at, zone_id)),"
                    " mine AS (SELECT u.id FROM units u JOIN f ON f.id = u.id"
                    "  WHERE u.position_at IS NULL OR u.position_at < f.at"
                    "  ORDER BY u.id FOR NO KEY UPDATE OF u SKIP LOCKED)"
                    " UPDATE units u SET lat = f.lat, lon = f.lon, position_at = f.at,"
                    " zone_id = f.zone_id FROM f JOIN mine ON mine.id = f.id"
                    " WHERE u.id = f.id AND (u.position_at IS NULL OR u.position_at < f.at)",
                    ids,
                    lats,
                    lons,
                    ats,
                    zone_ids,
                )
                await conn.execute(
                    "INSERT INTO unit_track (unit_id, lat, lon, at, accuracy_m)"
                    " SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[],"
                    " $4::timestamptz[], $5::float8[]) ON CONFLICT DO NOTHING",
                    ids,
                    lats,
                    lons,
                    ats,
                    accuracies,
                )
                async with conn.transaction():
                    await self._geofence(conn, batch)
        except BaseException:
            # Put them back unless newer fixes arrived meanwhile.
            for unit_id, fix in batch.items():
                self._pending.setdefault(unit_id, fix)
            raise
        return len(ids)

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

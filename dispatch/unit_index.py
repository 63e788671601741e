"""The live index of available units: one Redis GEO set per agency.

A hint, never the truth: candidates found here are re-read from PostgreSQL (status,
freshness, capabilities) before anyone is offered anything, and claiming is still the
conditional UPDATE. What it saves is scanning every unit of a 100,000-unit fleet for
each incident: the nearest few dozen are enough to rank.

Kept current by the outbox relay (unit.status_changed events, in commit order) and by
MDT pings (positions of units already in the index); rebuilt from PostgreSQL whenever a
relay becomes leader.

It also holds each unit's newest fix with its time (written on every ping by
dispatch/positions.py), which ranking lays over PostgreSQL's copy: that copy is only
flushed every few seconds, and a unit that pinged next to an incident a moment ago must
be ranked where it is, not where it was.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dispatch.engine import LiveFix
from dispatch.incident_types import AGENCIES
from dispatch.keys import RedisKeys
from dispatch.transient import OutageLog
from geo.points import GeoPoint

log = logging.getLogger(__name__)

_RINGS_M = (1_000.0, 3_000.0)

# GEOSEARCH sorts everything inside the radius before applying COUNT, so a 15 km radius
# over a 100,000-unit fleet sorts most of the fleet. Growing rings stop as soon as a
# ring holds enough: those are then the nearest overall. The rings run inside Redis, so
# a search is one round trip however many it takes (an incident nobody is free for
# near, the usual case in a surge, took all three).
# KEYS[1]: the agency's set; ARGV: lon, lat, count, then the rings' radii in metres.
NEAREST_IN_RINGS = """
local found = {}
local count = tonumber(ARGV[3])
for i = 4, #ARGV do
  found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
                     'BYRADIUS', ARGV[i], 'm', 'ASC', 'COUNT', count)
  if #found >= count then break end
end
return found
"""

# Store a fix only if it is newer than the one kept: an MDT that replays positions it
# buffered in a tunnel must not put an old place over the one it sent just before.
SET_NEWER_FIX = """
local kept = redis.call('HGET', KEYS[1], ARGV[1])
if kept then
  local at = tonumber(string.match(kept, '(%S+)$'))
  if at and at >= tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def encode_fix(fix: LiveFix) -> str:
    """The hash value of a fix: "lat lon at", exact (repr round-trips a float)."""
    return f"{fix.point.lat!r} {fix.point.lon!r} {fix.at!r}"


def decode_fix(value: bytes | str) -> LiveFix | None:
    """The fix a hash value holds, or None for a value this code did not write."""
    text = value.decode() if isinstance(value, bytes) else value
    try:
        lat, lon, at = (float(part) for part in text.split())
        return LiveFix(GeoPoint(lat=lat, lon=lon), at)
    except ValueError:
        return None


class UnitIndex:
    """Available units by agency, searchable by distance."""

    def __init__(self, *, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        # Every report and ping reads or writes here: during a Redis outage one line when
        # it starts (PostgreSQL is scanned instead) and one when it ends, not one each.
        self._outage = OutageLog(log, "unit index (falling back to PostgreSQL)")

    async def nearest(
        self, point: GeoPoint, agency: str, *, radius_m: float, count: int
    ) -> list[str] | None:
        """Up to ``count`` unit ids of ``agency`` within ``radius_m``, nearest first; None
        when the index cannot be read (the caller then scans PostgreSQL)."""
        rings = [r for r in _RINGS_M if r < radius_m] + [radius_m]
        try:
            found: list[Any] = await self._redis.eval(
                NEAREST_IN_RINGS,
                1,
                self._keys.available_units(agency),
                repr(point.lon),
                repr(point.lat),
                count,
                *(repr(ring) for ring in rings),
            )
        except (OSError, RedisError) as err:
            self._outage.failed(err)
            return None
        self._outage.succeeded()
        return [m.decode() if isinstance(m, bytes) else str(m) for m in found]

    async def fixes(self, unit_ids: Sequence[str]) -> dict[str, LiveFix] | None:
        """The newest fix of each of these units that has one, in one round trip; None
        when Redis cannot be read (the caller then trusts PostgreSQL's positions)."""
        if not unit_ids:
            return {}
        try:
            values = await self._redis.hmget(self._keys.unit_fixes, list(unit_ids))
        except (OSError, RedisError) as err:
            self._outage.failed(err)
            return None
        self._outage.succeeded()
        found = {}
        for unit_id, value in zip(unit_ids, values, strict=True):
            fix = decode_fix(value) if value is not None else None
            if fix is not None:
                found[unit_id] = fix
        return found

    async def rebuild(self, conn: asyncpg.Connection) -> int:
        """Replace the index with PostgreSQL's available units; returns how many."""
        rows = await conn.fetch(
            "SELECT id, agency, lat, lon FROM units WHERE status = 'available' AND lat IS NOT NULL"
        )
        pipe = self._redis.pipeline(transaction=True)
        for agency in AGENCIES:
            pipe.delete(self._keys.available_units(agency))
        for row in rows:
            pipe.geoadd(
                self._keys.available_units(row["agency"]), (row["lon"], row["lat"], row["id"])
            )
        await pipe.execute()
        return len(rows)

    async def apply(self, conn: asyncpg.Connection, events: Iterable[dict[str, Any]]) -> None:
        """Follow unit status changes (relayed events, in commit order)."""
        changes: dict[str, bool] = {}
        for event in events:
            if event["type"] == "unit.status_changed" and event["unit_id"]:
                changes[event["unit_id"]] = event["data"].get("to") == "available"
        if not changes:
            return
        rows = await conn.fetch(
            "SELECT id, agency, lat, lon, status FROM units WHERE id = ANY($1::text[])",
            list(changes),
        )
        pipe = self._redis.pipeline(transaction=False)
        for row in rows:
            key = self._keys.available_units(row["agency"])
            # The row's current status decides: a later event may already have moved on.
            if row["status"] == "available" and row["lat"] is not None:
                pipe.geoadd(key, (row["lon"], row["lat"], row["id"]))
            else:
                pipe.zrem(key, row["id"])
        await pipe.execute()

    async def moved(self, unit_id: str, agency: str, point: GeoPoint) -> None:
        """A ping: move the unit if it is in the index (XX: never add a busy unit)."""
        try:
            await self._redis.geoadd(
                self._keys.available_units(agency), (point.lon, point.lat, unit_id), xx=True
            )
        except (OSError, RedisError) as err:
            self._outage.failed(err)

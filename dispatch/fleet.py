"""The fleet as dispatch sees it: free units of an agency, placed where their newest fix
puts them (the live fix from Redis over PostgreSQL's flushed copy), nearest first when
the live index can say so. Reads only; the core ranks, the shell claims."""

from __future__ import annotations

from functools import partial

import asyncpg

from dispatch.core import place
from dispatch.core.facts import IncidentFacts, LiveFix, Rules, TravelModel, UnitSnapshot
from dispatch.core.rank import Policy, is_fresh, with_live_fix
from dispatch.unit_index import UnitIndex
from dispatch.zonestore import ZoneDirectory
from geo.points import GeoPoint

# How many of the nearest units the live index hands over for ranking: enough that the
# incident's own-zone units and the slack rule see every realistic contender.
_NEAREST = 64


class Fleet:
    """Reads the units a decision is made from."""

    def __init__(
        self,
        *,
        zones: ZoneDirectory,
        rules: Rules,
        travel: TravelModel,
        policy: Policy,
        unit_index: UnitIndex | None,
    ) -> None:
        self._zones = zones
        self._rules = rules
        self._travel = travel
        self._policy = policy
        self._unit_index = unit_index

    async def candidates(
        self, conn: asyncpg.Connection, incident: IncidentFacts, agency: str
    ) -> tuple[list[UnitSnapshot], set[str] | None]:
        """Available units of ``agency`` to rank, and the ids the live index named when
        only the nearest were read (None: the whole agency was)."""
        # A policy with ``needs_fleet = True`` (a coverage rule) ranks the whole fleet.
        if self._unit_index is not None and not getattr(self._policy, "needs_fleet", False):
            ids = await self._unit_index.nearest(
                incident.point, agency, radius_m=self._travel.max_radius_m, count=_NEAREST
            )
            if ids:
                found = await self.available_units(conn, agency=agency, among=ids, stale=True)
                return found, set(ids)
        return await self.available_units(conn, agency=agency, stale=True), None

    async def available_units(
        self,
        conn: asyncpg.Connection,
        *,
        agency: str | None = None,
        among: list[str] | None = None,
        stale: bool = False,
    ) -> list[UnitSnapshot]:
        """Available units with a known and recent position, optionally of one agency.

        The position is the newest the MDT sent (the live fix in Redis, when it is newer
        than PostgreSQL's flushed copy). A unit whose MDT has not reported for
        ``position_stale_s`` may be anywhere (or its crew away from the vehicle): it is
        not trusted as available. ``stale``: include such units too (the core passes
        over them, and says so when nobody else could go).
        """
        # Two statements, not one with "$2 IS NULL OR id = ANY($2)": under a prepared
        # statement's generic plan that OR turns the primary-key lookup into a scan.
        columns = (
            "SELECT id, agency, zone_id, lat, lon, capabilities,"
            " extract(epoch FROM position_at)::float8 AS at,"
            " extract(epoch FROM now())::float8 AS now FROM units"
        )
        if among is None:
            rows = await conn.fetch(
                f"{columns} WHERE status = 'available' AND ($1::text IS NULL OR agency = $1)",
                agency,
            )
        else:
            rows = await conn.fetch(
                f"{columns} WHERE id = ANY($2::text[]) AND status = 'available'"
                " AND ($1::text IS NULL OR agency = $1)",
                agency,
                among,
            )
        return await self.placed(rows, fresh_only=not stale)

    async def placed(
        self, rows: list[asyncpg.Record], *, fresh_only: bool = True
    ) -> list[UnitSnapshot]:
        """Units of these rows where their newest fix puts them (if it is fresh, unless
        ``fresh_only`` is off): one Redis round trip for the live fixes, PostgreSQL's
        positions without it."""
        if not rows:
            return []
        fixes: dict[str, LiveFix] | None = None
        if self._unit_index is not None:
            fixes = await self._unit_index.fixes([r["id"] for r in rows])
        fixes = fixes or {}
        zone_of = partial(place.zone_id_of, self._zones.index)
        units = []
        for r in rows:
            fix = fixes.get(r["id"])
            if r["lat"] is not None:
                stored = GeoPoint(lat=r["lat"], lon=r["lon"])
            elif fix is not None:
                stored = fix.point  # not flushed yet: the live fix alone places it
            else:
                continue  # never reported a position
            unit = with_live_fix(
                UnitSnapshot(
                    id=r["id"],
                    agency=r["agency"],
                    zone_id=r["zone_id"],
                    position=stored,
                    capabilities=frozenset(r["capabilities"]),
                    position_at=r["at"] if r["lat"] is not None else None,
                    status=r.get("status", "available"),
                ),
                fix,
                zone_of,
            )
            if not fresh_only or is_fresh(unit.position_at, r["now"], self._rules.position_stale_s):
                units.append(unit)
        return units

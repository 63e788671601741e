"""The alerting loop: expire unanswered alerts, stand down those of ended incidents,
and alert the nearest free volunteers to incidents that still have room.

Every instance runs one; a pass runs under a transaction-level advisory lock, so one
instance at a time does the work (the others' passes return at once). It is woken by
the event stream that feeds the consoles (a new, moved, closed or merged incident, or a
volunteer who became available) and looks again every ``poll_s`` regardless: expiry
needs no event, and a missed wake-up costs a few seconds, never an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from dispatch.hub import Hub, Message
from dispatch.transient import OutageLog
from dispatch.volunteers import decide
from dispatch.volunteers.alerts import claim, end_alerts
from dispatch.volunteers.decide import AlertSnap, IncidentSnap, VolunteerSnap
from dispatch.volunteers.policy import AlertPolicy
from geo.points import GeoPoint

log = logging.getLogger(__name__)

_ACTOR = "system:volunteers"
_M_PER_DEG = 111_320.0
# Events after which the alerting may change at once.
_WAKE_ON = frozenset(
    {
        "incident.created",
        "incident.location_updated",
        "incident.reprioritised",
        "incident.closed",
        "incident.merged",
        "volunteer.changed",
        "volunteer.declined",
        "volunteer.done",
    }
)


def _incident(row: Any) -> IncidentSnap:
    point = GeoPoint(lat=row["lat"], lon=row["lon"]) if row["lat"] is not None else None
    return IncidentSnap(
        row["id"], row["type"], row["status"], point, row["created_at"], row["consent"]
    )


class VolunteerAlerter:
    """Runs the alerting rule over PostgreSQL; ``run()`` is the background task."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        schema: str,
        policy: AlertPolicy,
        labels: Mapping[str, str],
    ) -> None:
        self._pool = pool
        self._schema = schema
        self.policy = policy
        self.labels = dict(labels)
        self._wake = asyncio.Event()
        # Passes completed by this instance's loop: a test waits for one to begin and
        # end after a change, to know the rule has seen it.
        self.passes = 0
        self._outage = OutageLog(log, "volunteer alerting")

    def wake(self) -> None:
        """Look again now (an operator changed something the rule depends on)."""
        self._wake.set()

    def _sees(self, message: Message) -> None:
        if message.get("event", {}).get("type") in _WAKE_ON:
            self._wake.set()

    async def run(self, hub: Hub | None = None) -> None:
        """Sweep forever, on each wake-up and every ``poll_s``."""
        stop_watching = hub.watch(self._sees) if hub is not None else None
        try:
            while True:
                self._wake.clear()
                try:
                    await self.sweep()
                    self.passes += 1
                    self._outage.succeeded()
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    self._outage.failed(err)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.policy.poll_s):
                        await self._wake.wait()
        finally:
            if stop_watching is not None:
                stop_watching()

    async def sweep(self) -> int:
        """One pass; returns how many volunteers it alerted (0 if another instance
        holds the pass)."""
        async with self._pool.acquire() as conn, conn.transaction():
            got = await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtext($1))", f"volunteers:{self._schema}"
            )
            if not got:
                return 0
            now: datetime = await conn.fetchval("SELECT now()")
            await self._expire(conn, now)
            await self._stand_down_ended(conn)
            return await self._fill(conn, now)

    async def _expire(self, conn: asyncpg.Connection, now: datetime) -> None:
        rows = await conn.fetch(
            "SELECT id, incident_id, volunteer_id, state, expires_at FROM volunteer_alerts"
            " WHERE state = 'alerted' AND expires_at <= $1",
            now,
        )
        lapsed = decide.expired((AlertSnap(**dict(r)) for r in rows), now)
        if lapsed:
            await end_alerts(
                conn,
                self._schema,
                state="expired",
                reason="no answer in time",
                actor=_ACTOR,
                ids=lapsed,
                only=("alerted",),
            )

    async def _stand_down_ended(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(
            "SELECT DISTINCT i.id, i.type, i.status, i.lat, i.lon, i.created_at, c.consent"
            " FROM volunteer_alerts a JOIN incidents i ON i.id = a.incident_id"
            " LEFT JOIN volunteer_consent c ON c.incident_id = i.id"
            " WHERE a.state IN ('alerted', 'accepted')"
            " AND (i.status IN ('closed', 'merged') OR c.consent = 'refused')"
        )
        for row in rows:
            reason = decide.stand_down_reason(_incident(row))
            if reason is not None:
                await end_alerts(
                    conn,
                    self._schema,
                    state="stood_down",
                    reason=reason,
                    actor=_ACTOR,
                    incident_id=row["id"],
                )

    async def _fill(self, conn: asyncpg.Connection, now: datetime) -> int:
        incidents = await conn.fetch(
            "SELECT i.id, i.type, i.status, i.lat, i.lon, i.created_at, c.consent"
            " FROM incidents i LEFT JOIN volunteer_consent c ON c.incident_id = i.id"
            " WHERE i.type = ANY($1::text[]) AND i.status NOT IN ('closed', 'merged')"
            " AND i.lat IS NOT NULL"
            " AND i.created_at > $2::timestamptz - make_interval(secs => $3::float8)"
            " AND c.consent IS DISTINCT FROM 'refused' ORDER BY i.priority, i.id",
            sorted(self.policy.incident_types),
            now,
            self.policy.max_incident_age_s,
        )
        alerted = 0
        for row in incidents:
            alerted += await self._fill_one(conn, _incident(row), now)
        return alerted

    async def _fill_one(
        self, conn: asyncpg.Connection, incident: IncidentSnap, now: datetime
    ) -> int:
        if incident.point is None:  # the query asks for located incidents
            return 0
        alerts = [
            AlertSnap(**dict(r))
            for r in await conn.fetch(
                "SELECT id, incident_id, volunteer_id, state, expires_at FROM volunteer_alerts"
                " WHERE incident_id = $1",
                incident.id,
            )
        ]
        if sum(1 for a in alerts if a.state in decide.ACTIVE) >= self.policy.max_per_incident:
            return 0
        dlat = self.policy.radius_m / _M_PER_DEG
        dlon = dlat / max(math.cos(math.radians(incident.point.lat)), 0.01)
        rows = await conn.fetch(
            "SELECT v.id, v.lat, v.lon, v.position_at, v.available, v.verified, v.opted_out,"
            " EXISTS (SELECT 1 FROM volunteer_alerts a WHERE a.volunteer_id = v.id"
            " AND a.state IN ('alerted', 'accepted')) AS busy FROM volunteers v"
            " WHERE v.available AND v.verified AND NOT v.opted_out"
            " AND v.lat BETWEEN $1 AND $2 AND v.lon BETWEEN $3 AND $4",
            incident.point.lat - dlat,
            incident.point.lat + dlat,
            incident.point.lon - dlon,
            incident.point.lon + dlon,
        )
        volunteers = [
            VolunteerSnap(
                r["id"],
                GeoPoint(lat=r["lat"], lon=r["lon"]),
                r["position_at"],
                r["available"],
                r["verified"],
                r["opted_out"],
                r["busy"],
            )
            for r in rows
        ]
        alerted = 0
        for pick in decide.choose(incident, volunteers, alerts, self.policy, now):
            if await claim(conn, self._schema, incident.id, pick, ttl_s=self.policy.alert_ttl_s):
                alerted += 1
        return alerted

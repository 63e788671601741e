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
from dataclasses import replace
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
# Every new incident wakes the rule, and a pass looks at every open incident: under a
# burst of reports back-to-back passes would take a core (measured: the queued path's
# throughput fell 20 %). Volunteers walk for minutes; half a second costs nothing.
_MIN_PASS_S = 0.5
# Volunteers the rule could alert now, wherever the incident: available, verified, not
# opted out, on no incident, with a position fresh at $1 ($2: staleness in s, or null).
_FREE_VOLUNTEERS = (
    "FROM volunteers v WHERE v.available AND v.verified AND NOT v.opted_out"
    " AND v.lat IS NOT NULL AND v.position_at IS NOT NULL"
    " AND ($2::float8 IS NULL OR v.position_at >= $1::timestamptz - make_interval(secs => $2))"
    " AND NOT EXISTS (SELECT 1 FROM volunteer_alerts a WHERE a.volunteer_id = v.id"
    " AND a.state IN ('alerted', 'accepted'))"
)
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
            loop = asyncio.get_running_loop()
            while True:
                self._wake.clear()
                began = loop.time()
                try:
                    await self.sweep()
                    self.passes += 1
                    self._outage.succeeded()
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    self._outage.failed(err)
                # Wake-ups meanwhile are kept for the next pass, which comes no sooner.
                await asyncio.sleep(max(0.0, _MIN_PASS_S - (loop.time() - began)))
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
        # At most four reads whatever the number of open incidents (each woken pass
        # used to ask two questions per incident: with hundreds open, hundreds of
        # statements on every new incident), then the claims; one when nobody is free,
        # which under a burst of reports is the usual case.
        if not await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 {_FREE_VOLUNTEERS})", *self._fresh(now)
        ):
            return 0
        rows = await conn.fetch(
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
        incidents = [_incident(r) for r in rows]  # located: the query asks for lat
        if not incidents:
            return 0
        alerts: dict[int, list[AlertSnap]] = {i.id: [] for i in incidents}
        for r in await conn.fetch(
            "SELECT id, incident_id, volunteer_id, state, expires_at FROM volunteer_alerts"
            " WHERE incident_id = ANY($1::bigint[])",
            list(alerts),
        ):
            alerts[r["incident_id"]].append(AlertSnap(**dict(r)))
        room = [i for i in incidents if decide.room_left(alerts[i.id], self.policy) > 0]
        nearby = await self._nearby(conn, room, now)
        alerted = 0
        claimed: set[str] = set()
        for incident in room:  # in priority order: the most urgent is served first
            # A volunteer this pass alerted is busy for the incidents after it.
            volunteers = [
                replace(v, busy=True) if v.id in claimed else v for v in nearby[incident.id]
            ]
            picks = decide.choose(incident, volunteers, alerts[incident.id], self.policy, now)
            for pick in picks:
                ttl_s = self.policy.alert_ttl_s
                if await claim(conn, self._schema, incident.id, pick, ttl_s=ttl_s):
                    claimed.add(pick.volunteer_id)
                    alerted += 1
        return alerted

    def _fresh(self, now: datetime) -> tuple[datetime, float | None]:
        """The parameters of ``_FREE_VOLUNTEERS``: now and the policy's staleness."""
        return now, self.policy.position_stale_s

    async def _nearby(
        self, conn: asyncpg.Connection, incidents: list[IncidentSnap], now: datetime
    ) -> dict[int, list[VolunteerSnap]]:
        """Alertable volunteers in each incident's box of ``radius_m``, in one read."""
        found: dict[int, list[VolunteerSnap]] = {i.id: [] for i in incidents}
        boxes = []
        dlat = self.policy.radius_m / _M_PER_DEG
        for incident in incidents:
            if incident.point is None:  # only located incidents are filled
                continue
            dlon = dlat / max(math.cos(math.radians(incident.point.lat)), 0.01)
            lat, lon = incident.point.lat, incident.point.lon
            boxes.append((incident.id, lat - dlat, lat + dlat, lon - dlon, lon + dlon))
        if not boxes:
            return found
        # Only volunteers the rule could pick (free, with a fresh position): with every
        # volunteer near a burst of incidents busy, reading them all per incident was
        # most of a pass. The rule checks again; this only keeps the read small.
        rows = await conn.fetch(
            "SELECT b.incident_id, v.id, v.lat, v.lon, v.position_at, v.available, v.verified,"
            " v.opted_out FROM unnest($3::bigint[], $4::float8[], $5::float8[], $6::float8[],"
            " $7::float8[]) AS b(incident_id, lat_lo, lat_hi, lon_lo, lon_hi)"
            f" JOIN (SELECT v.* {_FREE_VOLUNTEERS}) v"
            " ON v.lat BETWEEN b.lat_lo AND b.lat_hi AND v.lon BETWEEN b.lon_lo AND b.lon_hi",
            *self._fresh(now),
            *(list(column) for column in zip(*boxes, strict=True)),
        )
        for r in rows:
            found[r["incident_id"]].append(
                VolunteerSnap(
                    r["id"],
                    GeoPoint(lat=r["lat"], lon=r["lon"]),
                    r["position_at"],
                    r["available"],
                    r["verified"],
                    r["opted_out"],
                    False,
                )
            )
        return found

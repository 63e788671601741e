"""The MDT bots of a live simulated run: one websocket per unit that accepts offers,
drives to the scene and back in compressed time, pings its position, patrols around its
base or post when idle, and closes incidents whose crews are done."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import websockets

from dispatch.simulation.live_run import LiveRun, operator_call
from dispatch.simulation.offline import Response
from dispatch.simulation.scenario import Arrival
from geo.distance import distance_m, travel_time_s
from geo.points import GeoPoint

log = logging.getLogger(__name__)

_PING_EVERY_S = 30.0  # simulated seconds between location pings while driving
_PATROL_RADIUS_M = 1_500.0  # how far from its base or post an idle unit patrols
_PATROL_PAUSE_S = (300.0, 900.0)  # simulated seconds parked between patrol legs
_PATROL_PACE = 0.5  # patrol speed, as a share of the model's driving speed
_CLOSED = "sim.socket_closed"  # what the reader hands over when the socket ends


@dataclass
class _Crew:
    """Where one simulated unit is, as its own pings say, and where it patrols."""

    here: GeoPoint
    rng: random.Random  # the unit's own seeded stream: patrol routes repeat per seed
    beat: tuple[GeoPoint, ...] = ()  # points of its home zone


async def _patrol(run: LiveRun, ws: Any, crew: _Crew, anchor: GeoPoint) -> None:
    """Drive to ``anchor`` (its base or post), then patrol around it until dispatched:
    a pause, then a slow drive to a point of its zone near the anchor, and back."""
    await _drive(run, ws, crew, anchor)
    near = [p for p in crew.beat if distance_m(p, anchor) <= _PATROL_RADIUS_M] or [anchor]
    while True:
        await run.sleep(crew.rng.uniform(*_PATROL_PAUSE_S))
        waypoint = near[crew.rng.randrange(len(near))]
        await _drive(run, ws, crew, waypoint, speed_kmh=run.config.speed_kmh * _PATROL_PACE)
        await run.sleep(crew.rng.uniform(*_PATROL_PAUSE_S))
        await _drive(run, ws, crew, anchor, speed_kmh=run.config.speed_kmh * _PATROL_PACE)


async def _drive(
    run: LiveRun,
    ws: Any,
    crew: _Crew,
    end: GeoPoint,
    factor: float = 1.0,
    *,
    speed_kmh: float | None = None,
) -> None:
    """Drive a straight line to ``end`` (road factor, model speed unless given), pinging
    on the way; cancellable, leaving ``crew.here`` where the last ping said."""
    start = crew.here
    seconds = (
        travel_time_s(
            start,
            end,
            road_factor=run.config.road_factor,
            speed_kmh=speed_kmh or run.config.speed_kmh,
        )
        * factor
    )
    done = 0.0
    while done < seconds:
        step = min(_PING_EVERY_S, seconds - done)
        await run.sleep(step)
        done += step
        f = done / seconds
        crew.here = GeoPoint(
            lat=start.lat + (end.lat - start.lat) * f, lon=start.lon + (end.lon - start.lon) * f
        )
        await ws.send(
            json.dumps(
                {"type": "location", "lat": crew.here.lat, "lon": crew.here.lon, "accuracy_m": 10}
            )
        )
    crew.here = end


async def _events(ws: Any, inbox: asyncio.Queue[dict[str, Any]]) -> None:
    """Hand the socket's events over as they come, so the crew can answer an offer
    while it drives back."""
    reason = "the server closed the socket"
    try:
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "event":
                await inbox.put(message["event"])
    except websockets.ConnectionClosed as err:
        reason = f"the connection was lost: {err}"
    except Exception as err:  # reported to the bot, which stops
        reason = f"reading the socket failed: {err!r}"
    await inbox.put({"type": _CLOSED, "reason": reason})


async def _serve(run: LiveRun, ws: Any, crew: _Crew, unit_id: str, event: dict[str, Any]) -> None:
    """One job, from the offer to the end of the service on scene."""
    data = event["data"]
    incident_id = int(event["incident_id"])
    offered = run.now()
    arrival = await run.arrival_of(incident_id)
    agency = str(data.get("agency", "police"))
    zone = arrival.zone_id if arrival else str(data["incident"].get("zone_id"))
    # The emergency's own type: the offer may precede the call-taker's classification.
    kind = arrival.type if arrival else str(data["incident"]["type"])
    response = run.responses.setdefault(
        (incident_id, agency),
        Response(
            incident_id,
            zone,
            agency,
            kind,
            run.types[kind].priority if kind in run.types else int(data["incident"]["priority"]),
            arrival.channel if arrival else "?",
            arrival.t_s if arrival else offered,
            run.config.target_s(zone),
        ),
    )
    response.unit_id, response.offered_s = unit_id, offered
    await run.sleep(arrival.accept_s.get(agency, 10.0) if arrival else 10.0)
    await ws.send(json.dumps({"type": "accept", "assignment_id": data["assignment_id"]}))
    response.accepted_s = run.now()
    await ws.send(json.dumps({"type": "status", "status": "en_route"}))
    loc = data["incident"]["location"]
    scene = GeoPoint(lat=loc["lat"], lon=loc["lon"])
    await _drive(run, ws, crew, scene, arrival.drive_factor if arrival else 1.0)
    await ws.send(json.dumps({"type": "status", "status": "on_scene"}))
    response.on_scene_s = run.now()
    await run.sleep(arrival.service_s.get(agency, 1200.0) if arrival else 1200.0)
    await ws.send(json.dumps({"type": "status", "status": "available"}))
    run.busy[unit_id] = run.busy.get(unit_id, 0.0) + run.now() - offered


async def _close_if_done(run: LiveRun, incident_id: int, arrival: Arrival | None) -> None:
    """The simulated operator closes an incident once every unit sent to it, and one of
    each agency of its plan, has finished on scene (as a control room would on the
    crews' reports), so the console shows what is still going on."""
    sent = {agency for (incident, agency) in run.responses if incident == incident_id}
    if arrival is not None:
        sent |= set(run.types[arrival.type].plan)
    if not all((incident_id, agency) in run.cleared for agency in sent):
        return
    try:
        await operator_call(
            run, "POST", f"/v1/incidents/{incident_id}/close", {"disposition": "resolved"}
        )
    except (OSError, ValueError) as err:  # e.g. 409: merged into another meanwhile
        log.warning("closing incident %s failed: %s", incident_id, err)


async def crew_bot(run: LiveRun, ws_url: str, unit_id: str, token: str) -> None:
    """One MDT: accept offers, drive, serve, then head back to base or to the post the
    engine names (unit.post_assigned), taking the next offer on the way; until
    cancelled."""
    async with websockets.connect(
        ws_url + "/v1/ws/mdt", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        snapshot = json.loads(await ws.recv())
        unit = snapshot.get("unit") or {}
        loc = unit.get("location") or {}
        base = GeoPoint(lat=loc.get("lat", 0.0), lon=loc.get("lon", 0.0))
        rng = random.Random(f"erss-sim-patrol:{run.seed}:{unit_id}")  # noqa: S311 (simulation)
        crew = _Crew(base, rng, run.beats.get(str(unit.get("home_zone_id")), ()))
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        reader = asyncio.create_task(_events(ws, inbox))
        heading: asyncio.Task[None] | None = asyncio.create_task(_patrol(run, ws, crew, base))
        try:
            while True:
                event = await inbox.get()
                kind = event.get("type")
                if kind == _CLOSED:
                    log.warning("simulated MDT %s stops: %s", unit_id, event["reason"])
                    return
                if kind == "unit.post_assigned":
                    post = GeoPoint(lat=event["data"]["lat"], lon=event["data"]["lon"])
                    heading = await _head(run, ws, crew, post, heading)
                elif kind == "unit.status_changed" and _completed(event):
                    # The server has taken the crew's report: the job is done there too,
                    # so closing now cannot cancel it instead.
                    incident_id = int(event["incident_id"])
                    agency = next(
                        (
                            a
                            for (i, a), r in run.responses.items()
                            if i == incident_id and r.unit_id == unit_id
                        ),
                        None,
                    )
                    if agency is not None:
                        run.cleared.add((incident_id, agency))
                        arrival = run.by_incident.get(incident_id)
                        await _close_if_done(run, incident_id, arrival)
                elif kind == "assignment.offered" and not _expired(event):
                    await _stop(heading)
                    heading = None
                    await _serve(run, ws, crew, unit_id, event)
                    heading = await _head(run, ws, crew, base, None)
        finally:
            await _stop(heading)
            await _stop(reader)


def _completed(event: dict[str, Any]) -> bool:
    """Whether a unit status event is the server completing its job."""
    data = event.get("data") or {}
    return data.get("assignment_status") == "completed" and event.get("incident_id") is not None


def _expired(event: dict[str, Any]) -> bool:
    """Whether an offer read late (after a job) can no longer be accepted."""
    expires = event["data"].get("expires_at")
    return bool(expires) and datetime.fromisoformat(expires) <= datetime.now(UTC)


async def _head(
    run: LiveRun, ws: Any, crew: _Crew, to: GeoPoint, current: asyncio.Task[None] | None
) -> asyncio.Task[None]:
    """Start driving, while available, towards ``to`` (instead of where it was going),
    to patrol around it."""
    await _stop(current)
    return asyncio.create_task(_patrol(run, ws, crew, to))


async def _stop(task: asyncio.Task[None] | None) -> None:
    """Cancel a helper task and wait for it to end; unlike awaiting it under
    suppress(CancelledError), a cancel aimed at the caller meanwhile is not swallowed."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])

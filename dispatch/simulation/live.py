"""Drive a running server through its public contract only: signed gateway posts and MDT
websockets (docs/protocol.md), with time compressed by ``speedup``.

The seeded arrivals of the offline simulator are posted at their (compressed) times:
panic triggers to the panic gateway, SMS as AML texts, calls as a telecom call followed
a few seconds later by the caller's AML SMS, vehicle panic buttons as a tracking
backend's alerts (the emergency, then the moving bus's fixes). One bot per unit holds
an MDT socket: it accepts offers after the drawn delay, reports en_route, drives a
straight line (road factor, model speed) while sending location pings, reports
on_scene, stays the service time, reports available and drives back to its base, or to
the standby post the server names (unit.post_assigned), taking the next offer on the
way; idle, it patrols around that point (seeded routes among points of its zone, at
half speed, with pauses). A simulated operator classifies each report as the
call-taker would, and closes each incident once its crews are done. The inputs repeat
exactly for a seed; the server's timing does not (it is a live system).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import websockets

from dispatch.incident_types import IncidentType, load_incident_types
from dispatch.simulation.offline import Response, SimResult
from dispatch.simulation.scenario import Arrival, City, SimConfig, arrivals
from dispatch.simulation.vehicles import vehicle_alerts
from gateways.client import PATHS, aml_sms, deliver
from gateways.panic.adapter import CATEGORY_TYPES
from geo.distance import distance_m, travel_time_s
from geo.points import GeoPoint

_PING_EVERY_S = 30.0  # simulated seconds between location pings while driving
_PATROL_RADIUS_M = 1_500.0  # how far from its base or post an idle unit patrols
_PATROL_PAUSE_S = (300.0, 900.0)  # simulated seconds parked between patrol legs
_PATROL_PACE = 0.5  # patrol speed, as a share of the model's driving speed
_SAMPLE_S = 300.0  # simulated seconds between queue-length samples (offline: the same)
_CLOSED = "sim.socket_closed"  # what the reader hands over when the socket ends

log = logging.getLogger(__name__)

# The panic app category that names each incident type (gateways/panic/adapter.py).
_PANIC_CATEGORIES = {
    "women_in_distress": "women_safety",
    "medical": "medical",
    "fire": "fire",
    "accident": "accident",
    "accident_injuries": "accident_injuries",
    "crime_in_progress": "crime",
    "other": "other",
}


@dataclass
class LiveRun:
    """State shared by the reporter and the MDT bots of one run."""

    base_url: str
    credentials: dict[str, Any]
    config: SimConfig
    speedup: float
    seed: int = 0
    beats: Mapping[str, tuple[GeoPoint, ...]] = field(default_factory=dict)  # zone -> points
    started: float = 0.0
    types: dict[str, IncidentType] = field(default_factory=load_incident_types)
    by_incident: dict[int, Arrival] = field(default_factory=dict)
    responses: dict[tuple[int, str], Response] = field(default_factory=dict)
    cleared: set[tuple[int, str]] = field(default_factory=set)  # (incident, agency) done
    busy: dict[str, float] = field(default_factory=dict)

    async def arrival_of(self, incident_id: int) -> Arrival | None:
        """The emergency behind an incident; its reporter may still be reading the
        gateway's answer when the offer arrives, so wait a little (real time)."""
        for _ in range(200):
            arrival = self.by_incident.get(incident_id)
            if arrival is not None:
                return arrival
            await asyncio.sleep(0.005)
        return None

    def now(self) -> float:
        """Simulated seconds since the start of the run."""
        return (asyncio.get_running_loop().time() - self.started) * self.speedup

    async def sleep(self, simulated_s: float) -> None:
        """Sleep ``simulated_s`` simulated seconds."""
        await asyncio.sleep(max(0.0, simulated_s) / self.speedup)


async def _post(run: LiveRun, kind: str, payload: dict[str, Any], gateway: str) -> Any:
    answer = await asyncio.to_thread(
        deliver,
        run.base_url,
        PATHS[kind],
        payload,
        gateway=gateway,
        secret=run.credentials["gateways"][gateway],
    )
    return answer.body


async def _report(run: LiveRun, arrival: Arrival, seed: int) -> None:
    """Post one emergency through its channel at its time."""
    await run.sleep(arrival.t_s - run.now())
    ident = f"sim-{seed}-{arrival.id}"
    phone = f"+9190{seed % 100:02d}{arrival.id:06d}"
    p = arrival.point
    if arrival.channel == "panic":
        category = _PANIC_CATEGORIES.get(arrival.type)
        payload: dict[str, Any] = {
            "trigger_id": ident,
            "device_id": f"dev-{ident}",
            "location": {"lat": p.lat, "lon": p.lon, "accuracy_m": 15.0},
        }
        if category:
            payload["category"] = category
        body = await _post(run, "panic", payload, "panic")
    elif arrival.channel == "vehicle":
        # The type is the button's own (vehicle_panic): nothing for a call-taker to set.
        for n, (delay, alert) in enumerate(vehicle_alerts(arrival, seed)):
            await run.sleep(delay)
            answer = await _post(run, "vehicle", {**alert, "time": _now()}, "vehicle")
            if n == 0:
                _incident_of(run, answer, arrival)
        return
    elif arrival.channel == "call":
        body = await _post(run, "call", {"call_id": ident, "caller": phone}, "telecom")
        incident_id = _incident_of(run, body, arrival)
        # The call-taker judges the type during the call, before the AML SMS locates it.
        await _classify(run, incident_id, arrival, said="other")
        await run.sleep(5.0)
        sms = {"message_id": ident, "from": phone, "to": "112", "text": aml_sms(p.lat, p.lon)}
        await _post(run, "sms", sms, "sms")
        # The SMS joins as 'other' and raises a less urgent type to its priority.
        if run.types[arrival.type].priority > run.types["other"].priority:
            await _classify(run, incident_id, arrival, said="other")
        return
    else:
        sms = {"message_id": ident, "from": phone, "to": "112", "text": aml_sms(p.lat, p.lon)}
        body = await _post(run, "sms", sms, "sms")
    said = (
        CATEGORY_TYPES.get(_PANIC_CATEGORIES.get(arrival.type, ""), "panic")
        if arrival.channel == "panic"
        else "other"
    )
    await _classify(run, _incident_of(run, body, arrival), arrival, said=said)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _incident_of(run: LiveRun, body: Any, arrival: Arrival) -> int | None:
    """The incident a gateway's answer names, recorded at once: its first offer may
    reach an MDT bot before the reporter's next step."""
    if isinstance(body, dict) and isinstance(body.get("incident_id"), int):
        run.by_incident[body["incident_id"]] = arrival
        return int(body["incident_id"])
    log.warning("report %s made no incident: %s", arrival.id, body)
    return None


async def _classify(run: LiveRun, incident_id: int | None, arrival: Arrival, *, said: str) -> None:
    """Set the incident's type as the call-taker would, when the channel ``said``
    another (calls and SMS arrive as 'other', panic triggers as their app category)."""
    if incident_id is None or said == arrival.type:
        return
    try:
        await _operator(
            run,
            "POST",
            f"/v1/incidents/{incident_id}/classify",
            {"type": arrival.type, "reason": "call-taker (simulated)"},
        )
    except (OSError, ValueError) as err:  # e.g. 409: merged into another meanwhile
        log.warning("classifying incident %s failed: %s", incident_id, err)


async def _operator(run: LiveRun, method: str, path: str, body: Any = None) -> Any:
    """One operator REST call with the demo dispatcher's token; its JSON answer."""
    token = run.credentials["operators"]["dispatcher"]
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the operator chooses the URL
        run.base_url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )

    def send() -> Any:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read())

    return await asyncio.to_thread(send)


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
        await _operator(
            run, "POST", f"/v1/incidents/{incident_id}/close", {"disposition": "resolved"}
        )
    except (OSError, ValueError) as err:  # e.g. 409: merged into another meanwhile
        log.warning("closing incident %s failed: %s", incident_id, err)


async def _bot(run: LiveRun, ws_url: str, unit_id: str, token: str) -> None:
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


def _settled(run: LiveRun, types: dict[str, IncidentType]) -> bool:
    """Whether every posted emergency has a unit of each agency of its plan on scene."""
    for incident_id, arrival in run.by_incident.items():
        for agency in types[arrival.type].plan:
            response = run.responses.get((incident_id, agency))
            if response is None or response.on_scene_s is None:
                return False
    return all(r.on_scene_s is not None for r in run.responses.values())


def _completed(event: dict[str, Any]) -> bool:
    """Whether a unit status event is the server completing its job."""
    data = event.get("data") or {}
    return data.get("assignment_status") == "completed" and event.get("incident_id") is not None


def _expired(event: dict[str, Any]) -> bool:
    """Whether an offer read late (after a job) can no longer be accepted."""
    expires = event["data"].get("expires_at")
    return bool(expires) and datetime.fromisoformat(expires) <= datetime.now(UTC)


async def _sample_queue(run: LiveRun, samples: list[tuple[float, int]]) -> None:
    """Every ``_SAMPLE_S`` simulated seconds: how many incidents wait with no unit at
    all (offline counts waiting plan slots, so a partly served plan counts there only)."""
    while True:
        try:
            waiting = await _operator(run, "GET", "/v1/incidents?status=queued&limit=1000")
            samples.append((run.now(), len(waiting)))
        except (OSError, ValueError) as err:  # a sample lost is not worth stopping the run
            log.warning("queue sample failed: %s", err)
        await run.sleep(_SAMPLE_S)


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


async def run_live(
    base_url: str,
    credentials: dict[str, Any],
    city: City,
    config: SimConfig,
    *,
    seed: int,
    hours: float,
    load: float,
    speedup: float,
    drain_s: float = 3600.0,
) -> SimResult:
    """Post ``hours`` of seeded emergencies, run the fleet's MDTs, then wait up to
    ``drain_s`` simulated seconds for the last responses; the result the report reads."""
    ws_url = base_url.replace("http://", "ws://").replace("https://", "wss://")
    run = LiveRun(base_url, credentials, config, speedup, seed=seed, beats=city.points)
    run.started = asyncio.get_running_loop().time()
    day = arrivals(city, config, seed=seed, hours=hours, load=load)
    bots = [
        asyncio.create_task(_bot(run, ws_url, unit_id, token), name=f"mdt-{unit_id}")
        for unit_id, token in sorted(credentials["units"].items())
    ]
    queue: list[tuple[float, int]] = []
    sampler: asyncio.Task[None] | None = None
    try:
        await asyncio.sleep(0.5)  # let the MDTs connect and read their snapshots
        run.started = asyncio.get_running_loop().time()
        sampler = asyncio.create_task(_sample_queue(run, queue))
        # A report that fails stops the run, and with it the reports still to come.
        async with asyncio.TaskGroup() as reports:
            for arrival in day:
                reports.create_task(_report(run, arrival, seed))
        deadline = hours * 3600.0 + drain_s
        while run.now() < deadline and not _settled(run, run.types):
            await run.sleep(60.0)
    finally:
        if sampler is not None:
            bots.append(sampler)
        for bot in bots:
            bot.cancel()
        if bots:
            await asyncio.wait(bots)
        for bot in bots:
            if not bot.cancelled() and bot.exception() is not None:
                log.error("%s failed", bot.get_name(), exc_info=bot.exception())
    units = {u.id: u for u in city.units}
    busy = {uid: run.busy.get(uid, 0.0) for uid in units}
    responses = sorted(run.responses.values(), key=lambda r: (r.reported_s, r.agency))
    return SimResult(responses, queue, busy, max(run.now(), 1.0), units)


def new_run_id() -> str:
    """A short id for a live run's output folder."""
    return uuid.uuid4().hex[:8]

"""Drive a running server through its public contract only: signed gateway posts and MDT
websockets (docs/protocol.md), with time compressed by ``speedup``.

The seeded arrivals of the offline simulator are posted at their (compressed) times:
panic triggers to the panic gateway, SMS as AML texts, calls as a telecom call followed
a few seconds later by the caller's AML SMS. One bot per unit holds an MDT socket: it
accepts offers after the drawn delay, reports en_route, drives a straight line (road
factor, model speed) while sending location pings, reports on_scene, stays the service
time, reports available and drives back to its base. The inputs repeat exactly for a
seed; the server's timing does not (it is a live system).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import websockets

from dispatch.simulation.offline import Response, SimResult
from dispatch.simulation.scenario import Arrival, City, SimConfig, arrivals
from gateways.client import PATHS, aml_sms, deliver
from geo.distance import travel_time_s
from geo.points import GeoPoint

_PING_EVERY_S = 30.0  # simulated seconds between location pings while driving


@dataclass
class LiveRun:
    """State shared by the reporter and the MDT bots of one run."""

    base_url: str
    credentials: dict[str, Any]
    config: SimConfig
    speedup: float
    started: float = 0.0
    by_incident: dict[int, Arrival] = field(default_factory=dict)
    responses: dict[tuple[int, str], Response] = field(default_factory=dict)
    busy: dict[str, float] = field(default_factory=dict)

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
        category = {"women_in_distress": "women_safety", "medical": "medical"}.get(arrival.type)
        payload: dict[str, Any] = {
            "trigger_id": ident,
            "device_id": f"dev-{ident}",
            "location": {"lat": p.lat, "lon": p.lon, "accuracy_m": 15.0},
        }
        if category:
            payload["category"] = category
        body = await _post(run, "panic", payload, "panic")
    elif arrival.channel == "call":
        body = await _post(run, "call", {"call_id": ident, "caller": phone}, "telecom")
        await run.sleep(5.0)
        sms = {"message_id": ident, "from": phone, "to": "112", "text": aml_sms(p.lat, p.lon)}
        await _post(run, "sms", sms, "sms")
    else:
        sms = {"message_id": ident, "from": phone, "to": "112", "text": aml_sms(p.lat, p.lon)}
        body = await _post(run, "sms", sms, "sms")
    if isinstance(body, dict) and isinstance(body.get("incident_id"), int):
        run.by_incident[body["incident_id"]] = arrival


async def _drive(
    run: LiveRun, ws: Any, start: GeoPoint, end: GeoPoint, factor: float = 1.0
) -> GeoPoint:
    seconds = (
        travel_time_s(
            start, end, road_factor=run.config.road_factor, speed_kmh=run.config.speed_kmh
        )
        * factor
    )
    done = 0.0
    while done < seconds:
        step = min(_PING_EVERY_S, seconds - done)
        await run.sleep(step)
        done += step
        f = done / seconds
        here = GeoPoint(
            lat=start.lat + (end.lat - start.lat) * f, lon=start.lon + (end.lon - start.lon) * f
        )
        await ws.send(
            json.dumps({"type": "location", "lat": here.lat, "lon": here.lon, "accuracy_m": 10})
        )
    return end


async def _bot(run: LiveRun, ws_url: str, unit_id: str, token: str) -> None:
    """One MDT: accept offers, drive, serve, come back; until cancelled."""
    async with websockets.connect(
        ws_url + "/v1/ws/mdt", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        snapshot = json.loads(await ws.recv())
        loc = (snapshot.get("unit") or {}).get("location") or {}
        base = GeoPoint(lat=loc.get("lat", 0.0), lon=loc.get("lon", 0.0))
        here = base
        while True:
            message = json.loads(await ws.recv())
            event = message.get("event") or {}
            if message.get("type") != "event" or event.get("type") != "assignment.offered":
                continue
            data = event["data"]
            incident_id = int(event["incident_id"])
            arrival = run.by_incident.get(incident_id)
            agency = str(data.get("agency", "police"))
            offered = run.now()
            key = (incident_id, agency)
            reported = arrival.t_s if arrival else offered
            zone = arrival.zone_id if arrival else str(data["incident"].get("zone_id"))
            response = run.responses.setdefault(
                key,
                Response(
                    incident_id,
                    zone,
                    agency,
                    str(data["incident"]["type"]),
                    int(data["incident"]["priority"]),
                    arrival.channel if arrival else "?",
                    reported,
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
            here = await _drive(run, ws, here, scene, arrival.drive_factor if arrival else 1.0)
            await ws.send(json.dumps({"type": "status", "status": "on_scene"}))
            response.on_scene_s = run.now()
            service = arrival.service_s.get(agency, 1200.0) if arrival else 1200.0
            await run.sleep(service)
            await ws.send(json.dumps({"type": "status", "status": "available"}))
            run.busy[unit_id] = run.busy.get(unit_id, 0.0) + run.now() - offered
            here = await _drive(run, ws, here, base)


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
    run = LiveRun(base_url, credentials, config, speedup)
    run.started = asyncio.get_running_loop().time()
    day = arrivals(city, config, seed=seed, hours=hours, load=load)
    bots = [
        asyncio.create_task(_bot(run, ws_url, unit_id, token), name=f"mdt-{unit_id}")
        for unit_id, token in sorted(credentials["units"].items())
    ]
    queue: list[tuple[float, int]] = []
    try:
        await asyncio.sleep(0.5)  # let the MDTs connect and read their snapshots
        run.started = asyncio.get_running_loop().time()
        await asyncio.gather(*(_report(run, a, seed) for a in day))
        deadline = hours * 3600.0 + drain_s
        while run.now() < deadline and any(r.on_scene_s is None for r in run.responses.values()):
            await run.sleep(60.0)
    finally:
        for bot in bots:
            bot.cancel()
        for bot in bots:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await bot
    units = {u.id: u for u in city.units}
    busy = {uid: run.busy.get(uid, 0.0) for uid in units}
    responses = sorted(run.responses.values(), key=lambda r: (r.reported_s, r.agency))
    return SimResult(responses, queue, busy, max(run.now(), 1.0), units)


def new_run_id() -> str:
    """A short id for a live run's output folder."""
    return uuid.uuid4().hex[:8]

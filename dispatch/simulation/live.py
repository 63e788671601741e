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
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from dispatch.incident_types import IncidentType
from dispatch.simulation.live_crews import crew_bot
from dispatch.simulation.live_run import LiveRun, operator_call
from dispatch.simulation.offline import SimResult
from dispatch.simulation.scenario import Arrival, City, SimConfig, arrivals
from dispatch.simulation.vehicles import vehicle_alerts
from gateways.client import PATHS, aml_sms, deliver
from gateways.panic.adapter import CATEGORY_TYPES

_SAMPLE_S = 300.0  # simulated seconds between queue-length samples (offline: the same)

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
        await operator_call(
            run,
            "POST",
            f"/v1/incidents/{incident_id}/classify",
            {"type": arrival.type, "reason": "call-taker (simulated)"},
        )
    except (OSError, ValueError) as err:  # e.g. 409: merged into another meanwhile
        log.warning("classifying incident %s failed: %s", incident_id, err)


def _settled(run: LiveRun, types: dict[str, IncidentType]) -> bool:
    """Whether every posted emergency has a unit of each agency of its plan on scene."""
    for incident_id, arrival in run.by_incident.items():
        for agency in types[arrival.type].plan:
            response = run.responses.get((incident_id, agency))
            if response is None or response.on_scene_s is None:
                return False
    return all(r.on_scene_s is not None for r in run.responses.values())


async def _sample_queue(run: LiveRun, samples: list[tuple[float, int]]) -> None:
    """Every ``_SAMPLE_S`` simulated seconds: how many incidents wait with no unit at
    all (offline counts waiting plan slots, so a partly served plan counts there only)."""
    while True:
        try:
            waiting = await operator_call(run, "GET", "/v1/incidents?status=queued&limit=1000")
            samples.append((run.now(), len(waiting)))
        except (OSError, ValueError) as err:  # a sample lost is not worth stopping the run
            log.warning("queue sample failed: %s", err)
        await run.sleep(_SAMPLE_S)


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
        asyncio.create_task(crew_bot(run, ws_url, unit_id, token), name=f"mdt-{unit_id}")
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

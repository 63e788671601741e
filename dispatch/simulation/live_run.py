"""One live simulated run's shared state and the operator's REST calls, used by the
reporter (dispatch.simulation.live) and the MDT bots (dispatch.simulation.live_crews)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dispatch.incident_types import IncidentType, load_incident_types
from dispatch.simulation.offline import Response
from dispatch.simulation.scenario import Arrival, SimConfig
from geo.points import GeoPoint


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


async def operator_call(run: LiveRun, method: str, path: str, body: Any = None) -> Any:
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

"""The offline simulator: a discrete-event run of the city calling the engine's policy
directly (no HTTP, no database), fast enough to compare policies over many seeds.

Model, per emergency: the report arrives; after the channel's call-taking delay every
agency of the incident type's plan gets an offer, ranked by the policy over the
available units of that agency (as the live Dispatcher does: the 64 nearest ones, like
the live unit index, unless the policy sets ``needs_fleet``; the whole fleet when none
of those can go); the MDT accepts after its drawn delay; the unit drives a straight line
times the road factor at the model speed times the drawn driving noise; stays its drawn
service time on scene; then is available again at once and drives back to its patrol
base, or to the standby post the post rule names (dispatch/posts.py), dispatchable on
the way from its interpolated position. A plan slot with no
unit waits in a queue served by priority, then report time, whenever a unit frees up.
A policy may hold a low-priority slot for a unit that can arrive in time (``holds``):
it waits in the queue like a slot with no unit, and when the hold ends (``hold_s``
after the report) any unit may take it. A share of offers (``decline_share`` of the
config, 0 by default) is declined: the crew
answers after its drawn delay, the unit is free again at once, and the slot goes to the
next best unit that has not declined it, or waits in the queue. Whether an offer is
declined is drawn per emergency, agency and attempt, so every policy meets the same
refusals. No offer expires unanswered, and none is pre-empted.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dispatch.engine import Need, Policy, TravelModel, UnitSnapshot
from dispatch.incident_types import IncidentType, load_incident_types
from dispatch.posts import CoveragePosts
from dispatch.simulation.policies import haversine_m
from dispatch.simulation.scenario import Arrival, City, SimConfig, SimUnit
from geo.distance import travel_time_s
from geo.points import GeoPoint

_NEAREST = 64  # as dispatch.offers._NEAREST
_SAMPLE_S = 300.0  # queue length sampling period


@dataclass(slots=True)
class Response:
    """One plan slot of one emergency (one agency's unit), as the metrics need it."""

    incident_id: int
    zone_id: str
    agency: str
    type: str
    priority: int
    channel: str
    reported_s: float
    target_s: float
    unit_id: str | None = None
    offered_s: float | None = None
    accepted_s: float | None = None
    on_scene_s: float | None = None
    queued: bool = False
    # Units whose crews declined this slot (never offered it again, as live).
    declined_by: list[str] = field(default_factory=list)
    held: bool = False  # the policy held it for a unit that can arrive in time

    @property
    def response_s(self) -> float | None:
        """Report to on scene."""
        return None if self.on_scene_s is None else self.on_scene_s - self.reported_s


@dataclass(slots=True)
class _UnitState:
    unit: SimUnit
    busy: bool = False
    busy_since: float = 0.0
    busy_total: float = 0.0
    # Straight-line move from a to b between t0 and t1 (a == b when parked).
    a: GeoPoint = field(default_factory=lambda: GeoPoint(lat=0.0, lon=0.0))
    b: GeoPoint = field(default_factory=lambda: GeoPoint(lat=0.0, lon=0.0))
    t0: float = 0.0
    t1: float = 0.0

    def position(self, t: float) -> GeoPoint:
        if t >= self.t1 or self.t1 <= self.t0:
            return self.b
        f = (t - self.t0) / (self.t1 - self.t0)
        return GeoPoint(
            lat=self.a.lat + (self.b.lat - self.a.lat) * f,
            lon=self.a.lon + (self.b.lon - self.a.lon) * f,
        )


@dataclass
class SimResult:
    """What a run produced: every response, queue samples, and utilisation."""

    responses: list[Response]
    queue: list[tuple[float, int]]
    busy_s: dict[str, float]
    horizon_s: float
    units: dict[str, SimUnit]


# Event kinds, ordered so that simultaneous events resolve deterministically.
_FREE, _ON_SCENE, _ACCEPT, _DISPATCH, _SAMPLE, _HOLD_ENDS = range(6)


class OfflineSimulator:
    """Runs one seeded day (or any horizon) of arrivals through a policy."""

    def __init__(
        self,
        city: City,
        config: SimConfig,
        policy: Policy,
        *,
        model: TravelModel | None = None,
        types: dict[str, IncidentType] | None = None,
        posts: CoveragePosts | None = None,
    ) -> None:
        self.city = city
        self.posts = posts
        self.config = config
        self.policy = policy
        self.model = model or config.travel_model()
        self.types = types or load_incident_types()
        self._needs_fleet = bool(getattr(policy, "needs_fleet", False))
        self._holds = getattr(policy, "holds", lambda need: False)
        # A hold ends exactly then; the nudge makes the retry see it over.
        self._hold_s = float(getattr(policy, "hold_s", 0.0)) + 1e-6

    def run(self, arrivals: Sequence[Arrival], *, horizon_s: float = 86_400.0) -> SimResult:
        """Simulate until every emergency is served; metrics cover all ``arrivals``."""
        units = {u.id: _UnitState(u, a=u.base, b=u.base) for u in self.city.units}
        by_agency: dict[str, list[_UnitState]] = {}
        for state in units.values():
            by_agency.setdefault(state.unit.agency, []).append(state)
        events: list[tuple[float, int, int, object]] = []
        seq = 0

        def push(t: float, kind: int, payload: object) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(events, (t, kind, seq, payload))

        responses: list[Response] = []
        queue: list[tuple[int, float, int, str, Response, Arrival]] = []  # heap by priority, time
        samples: list[tuple[float, int]] = []
        for arrival in arrivals:
            push(arrival.t_s + self.config.dispatch_delay_s[arrival.channel], _DISPATCH, arrival)
        t = 0.0
        while t <= horizon_s:
            push(t, _SAMPLE, None)
            t += _SAMPLE_S

        def assign(now: float, response: Response, arrival: Arrival) -> bool:
            kind = self.types[arrival.type]
            need = Need(
                point=arrival.point,
                zone_id=arrival.zone_id,
                neighbour_zone_ids=frozenset(self.city.zones.neighbours(arrival.zone_id)),
                agency=response.agency,
                capabilities=kind.needs_of(response.agency),
                priority=kind.priority,
                waited_s=now - arrival.t_s,
                budget_s=response.target_s - (now - arrival.t_s) - self.config.accept_delay_s,
            )
            chosen = self._choose(
                now, need, by_agency.get(response.agency, []), set(response.declined_by)
            )
            if chosen is None:
                if not response.held and self._holds(need):
                    # Queued like any slot with no unit (a unit freeing nearby takes it);
                    # when the hold ends, any unit may go.
                    response.held = True
                    push(arrival.t_s + self._hold_s, _HOLD_ENDS, (response, arrival))
                return False
            state = units[chosen]
            here = state.position(now)
            state.busy, state.busy_since = True, now
            state.a = state.b = here
            state.t0 = state.t1 = now
            response.unit_id = chosen
            response.offered_s = now
            accept_at = now + arrival.accept_s[response.agency]
            push(accept_at, _ACCEPT, (response, arrival))
            return True

        while events:
            now, kind, _, payload = heapq.heappop(events)
            if kind == _SAMPLE:
                samples.append((now, len(queue)))
            elif kind == _DISPATCH:
                if not isinstance(payload, Arrival):  # pragma: no cover
                    raise TypeError(payload)
                itype = self.types[payload.type]
                for agency in itype.plan:
                    response = Response(
                        payload.id,
                        payload.zone_id,
                        agency,
                        payload.type,
                        itype.priority,
                        payload.channel,
                        payload.t_s,
                        self.config.target_s(payload.zone_id),
                    )
                    responses.append(response)
                    if not assign(now, response, payload):
                        response.queued = True
                        heapq.heappush(
                            queue,
                            (itype.priority, payload.t_s, payload.id, agency, response, payload),
                        )
            elif kind == _HOLD_ENDS:
                response, arrival = payload  # type: ignore[misc]
                waiting = [item for item in queue if item[4] is response]
                if waiting and response.unit_id is None:
                    queue.remove(waiting[0])
                    heapq.heapify(queue)
                    if not assign(now, response, arrival):
                        heapq.heappush(queue, waiting[0])
            elif kind == _ACCEPT:
                response, arrival = payload  # type: ignore[misc]
                state = units[response.unit_id]  # type: ignore[index]
                if self._declines(arrival, response):
                    state.busy = False
                    state.busy_total += now - state.busy_since
                    response.declined_by.append(state.unit.id)
                    response.unit_id = response.offered_s = None
                    if not assign(now, response, arrival):
                        response.queued = True
                        heapq.heappush(
                            queue,
                            (
                                response.priority,
                                arrival.t_s,
                                arrival.id,
                                response.agency,
                                response,
                                arrival,
                            ),
                        )
                    continue
                response.accepted_s = now
                drive = (
                    travel_time_s(
                        state.b,
                        arrival.point,
                        road_factor=self.model.road_factor,
                        speed_kmh=self.model.speed_for(arrival.zone_id),
                    )
                    * arrival.drive_factor
                )
                state.a, state.b, state.t0, state.t1 = state.b, arrival.point, now, now + drive
                push(now + drive, _ON_SCENE, (response, arrival))
            elif kind == _ON_SCENE:
                response, arrival = payload  # type: ignore[misc]
                response.on_scene_s = now
                push(now + arrival.service_s[response.agency], _FREE, response)
            elif kind == _FREE:
                if not isinstance(payload, Response):  # pragma: no cover
                    raise TypeError(payload)
                state = units[payload.unit_id]  # type: ignore[index]
                state.busy = False
                state.busy_total += now - state.busy_since
                home = self._standby(state, units.values())
                back = travel_time_s(
                    state.b,
                    home,
                    road_factor=self.model.road_factor,
                    speed_kmh=self.model.speed_kmh,
                )
                state.a, state.b, state.t0, state.t1 = state.b, home, now, now + back
                self._serve_queue(now, queue, assign)
        busy = {uid: s.busy_total for uid, s in units.items()}
        end = max(horizon_s, max((r.on_scene_s or 0.0 for r in responses), default=0.0))
        return SimResult(responses, samples, busy, end, {u.id: u for u in self.city.units})

    def _serve_queue(
        self,
        now: float,
        queue: list[tuple[int, float, int, str, Response, Arrival]],
        assign: object,
    ) -> None:
        """Offer waiting slots, most urgent and oldest first, until one finds no unit
        (later ones may still fit: e.g. an ambulance slot behind a police one)."""
        waiting = sorted(queue)
        queue.clear()
        for item in waiting:
            if not assign(now, item[4], item[5]):  # type: ignore[operator]
                heapq.heappush(queue, item)

    def _standby(self, state: _UnitState, fleet: Iterable[_UnitState]) -> GeoPoint:
        """Where a freed unit goes: its base, or the post rule's choice given where the
        agency's other idle units stand or are headed."""
        if self.posts is None:
            return state.unit.base
        others = [
            s.b
            for s in fleet
            if s is not state and not s.busy and s.unit.agency == state.unit.agency
        ]
        post = self.posts.choose(state.unit.zone_id, state.b, others)
        return state.unit.base if post is None else post.point

    def _declines(self, arrival: Arrival, response: Response) -> bool:
        """Whether this offer of the slot is declined (a draw of its own, the same
        whatever the policy)."""
        share = self.config.decline_share
        if share <= 0:
            return False
        attempt = len(response.declined_by)
        key = f"erss-sim-decline:{arrival.id}:{arrival.t_s!r}:{response.agency}:{attempt}"
        return random.Random(key).random() < share  # noqa: S311 (simulation)

    def _choose(
        self, now: float, need: Need, fleet: list[_UnitState], refused: set[str]
    ) -> str | None:
        """The policy's first candidate among the available units that have not declined
        the slot, as offers.py asks it."""
        idle = [s for s in fleet if not s.busy and s.unit.id not in refused]
        if not idle:
            return None
        snapshots = [
            UnitSnapshot(
                s.unit.id, s.unit.agency, s.unit.zone_id, s.position(now), s.unit.capabilities
            )
            for s in idle
        ]
        if self._needs_fleet or len(snapshots) <= _NEAREST:
            ranked = self.policy(need, snapshots, self.model)
            return ranked[0].unit_id if ranked else None
        # The live unit index: the 64 nearest within the radius first, then the rest.
        lat = np.fromiter((u.position.lat for u in snapshots), float, len(snapshots))
        lon = np.fromiter((u.position.lon for u in snapshots), float, len(snapshots))
        metres = haversine_m(lat, lon, need.point.lat, need.point.lon)
        order = np.argsort(metres, kind="stable")[:_NEAREST]
        nearest = [snapshots[int(i)] for i in order if metres[int(i)] <= self.model.max_radius_m]
        ranked = self.policy(need, nearest, self.model)
        if ranked:
            return ranked[0].unit_id
        tried = {u.id for u in nearest}
        ranked = self.policy(need, [u for u in snapshots if u.id not in tried], self.model)
        return ranked[0].unit_id if ranked else None

"""Dispatch policies as plug-ins of the engine, chosen by name per deployment.

``closest_idle`` is the engine's default. ``CoverageAware`` is a dynamic MEXCLP rule in
the manner of Jagtenberg, Bhulai and van der Mei (2017), "Dynamic ambulance dispatching:
is the closest-idle policy always optimal?", Health Care Management Science 20: among
the units that can still arrive within the time budget, send the one whose absence
least reduces the expected coverage of the area, with a penalty on its travel time
(their pure rule costs +37 % mean response time; the penalty trades some of the gain
for a response time close to closest-idle's). No unit in time: closest-idle's ranking.

Expected coverage (Daskin's MEXCLP): a demand point ``i`` of weight ``w_i`` covered by
``k_i`` idle units within the budget is served in time with probability
``1 - q**k_i``, where ``q`` is the fraction of time a unit is busy. Removing a unit that
covers ``i`` loses ``w_i * (1 - q) * q**(k_i - 1)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dispatch.core.facts import Need, TravelModel, UnitSnapshot
from dispatch.core.rank import Candidate, Policy, closest_idle
from dispatch.errors import ConfigurationError
from geo.zones import ZoneIndex

_EARTH_RADIUS_M = 6_371_008.8
FloatArray = npt.NDArray[np.float64]

POLICY_NAMES = ("closest_idle", "coverage")


def haversine_m(
    lat1: FloatArray | float,
    lon1: FloatArray | float,
    lat2: FloatArray | float,
    lon2: FloatArray | float,
) -> FloatArray:
    """Vectorised great-circle distance in metres (same formula as geo.distance.distance_m);
    the arguments broadcast."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat = p2 - p1
    dlon = np.radians(lon2 - lon1)
    h = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    result: FloatArray = 2 * _EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    return result


def check_coverage_params(*, reach_s: float, busy_fraction: float) -> None:
    """ConfigurationError unless the coverage rules' parameters make sense."""
    if not 0.0 <= busy_fraction < 1.0:
        raise ConfigurationError("busy_fraction must be in [0, 1)")
    if reach_s <= 0:
        raise ConfigurationError("reach_s must be positive")


@dataclass(frozen=True)
class Demand:
    """Where emergencies come from: points with weights (expected reports per hour), and
    the zone each point lies in."""

    lat: FloatArray
    lon: FloatArray
    weight: FloatArray
    zone: npt.NDArray[np.str_]

    @classmethod
    def from_zones(
        cls,
        zones: ZoneIndex,
        rates: Mapping[str, float],
        *,
        default_rate: float = 1.0,
        points_per_zone: int = 12,
    ) -> Demand:
        """``points_per_zone`` seeded points inside each zone sharing the zone's rate."""
        import random

        from dispatch.demo import point_inside

        lats: list[float] = []
        lons: list[float] = []
        weights: list[float] = []
        zone_ids: list[str] = []
        for zone in sorted(zones, key=lambda z: z.id):
            rng = random.Random(f"erss-demand:{zone.id}")  # noqa: S311 (sampling)
            rate = rates.get(zone.id, default_rate)
            for _ in range(points_per_zone):
                p = point_inside(zone, rng)
                lats.append(p.lat)
                lons.append(p.lon)
                weights.append(rate / points_per_zone)
                zone_ids.append(zone.id)
        return cls(np.array(lats), np.array(lons), np.array(weights), np.array(zone_ids))


class CoverageAware:
    """Dynamic MEXCLP dispatching (see the module docstring); a Policy.

    ``reach_s``: the travel-time budget (the response target minus the usual call-taking
    and acceptance delays) both for "can still arrive in time" and for coverage.
    ``busy_fraction``: MEXCLP's q. ``time_weight``: the penalty per budget of travel
    time, in units of the whole area's coverage (0: pure coverage, Jagtenberg's rule).
    ``hold_priority`` / ``hold_s``: an incident of that priority or less urgent (3:
    "other", 4: nuisance) that no free unit can reach in time (within the need's
    ``budget_s``, the time left before its response target, or ``reach_s`` if unknown)
    waits up to ``hold_s`` since its report for one that can (a nearby unit freeing up),
    instead of drawing a distant unit away from where emergencies may come; then the best
    unit goes anyway. 0 turns the hold off. Urgent incidents are never held.
    """

    # Offers' hook: this policy needs every available unit of the agency, not only the
    # live index's nearest ones (a unit's coverage depends on its neighbours).
    needs_fleet = True

    def __init__(
        self,
        demand: Demand,
        *,
        reach_s: float = 480.0,
        busy_fraction: float = 0.5,
        time_weight: float = 0.5,
        hold_priority: int = 0,
        hold_s: float = 0.0,
    ) -> None:
        check_coverage_params(reach_s=reach_s, busy_fraction=busy_fraction)
        self.demand = demand
        self.reach_s = reach_s
        self.busy_fraction = busy_fraction
        self.time_weight = time_weight
        self.hold_priority = hold_priority
        self.hold_s = hold_s
        self._total = float(demand.weight.sum()) or 1.0

    def holds(self, need: Need) -> bool:
        """Whether this need may only take a unit that can arrive in time (for now)."""
        return (
            0 < self.hold_priority <= need.priority
            and need.waited_s < self.hold_s
            # With no time left, nobody can arrive in time: holding would only delay.
            and (need.budget_s is None or need.budget_s > 0)
        )

    def __call__(
        self, need: Need, units: Iterable[UnitSnapshot], model: TravelModel
    ) -> list[Candidate]:
        """Units reaching the incident in time (within ``reach_s``, or the need's
        ``budget_s`` while it is held) by (coverage loss + time penalty), then every other
        candidate in closest-idle order (none while the need is held); only units
        closest-idle would rank (agency, capabilities, zone tiers and radius) are
        returned."""
        pool = [u for u in units if u.agency == need.agency]
        if not pool:
            return []
        lat = np.fromiter((u.position.lat for u in pool), float, len(pool))
        lon = np.fromiter((u.position.lon for u in pool), float, len(pool))
        per_m = model.seconds_per_m(need.zone_id)
        to_incident = haversine_m(lat, lon, need.point.lat, need.point.lon)
        held = self.holds(need)
        limit = need.budget_s if held and need.budget_s is not None else self.reach_s
        in_time = to_incident * per_m <= limit
        reachable = [u for u, ok in zip(pool, in_time, strict=True) if ok]
        ranked_fast = closest_idle(need, reachable, model)
        # Beyond the budget only units closest-idle could rank at all matter: own or
        # neighbouring zone, or within the radius (pre-filtered here, cheaply).
        near_zones = {need.zone_id, *need.neighbour_zone_ids}
        rest = [
            u
            for u, ok, m in zip(pool, in_time, to_incident, strict=True)
            if not ok and (m <= model.max_radius_m or u.zone_id in near_zones)
        ]
        ranked_rest = closest_idle(need, rest, model)
        if held:
            ranked_rest = []  # rather wait for a unit in time (see the class docstring)
        if len(ranked_fast) <= 1:
            return ranked_fast + ranked_rest
        loss = self._coverage_loss(need, pool, lat, lon, model)
        ids = {u.id: i for i, u in enumerate(pool)}
        scored = sorted(
            ranked_fast,
            key=lambda c: (
                loss[ids[c.unit_id]] / self._total
                + self.time_weight * c.travel_time_s / self.reach_s,
                c.unit_id,
            ),
        )
        return scored + ranked_rest

    def _coverage_loss(
        self,
        need: Need,
        pool: list[UnitSnapshot],
        lat: FloatArray,
        lon: FloatArray,
        model: TravelModel,
    ) -> FloatArray:
        """Per unit of ``pool``: expected coverage lost if it left (reports per hour)."""
        per_m = model.seconds_per_m()
        reach_m = self.reach_s / per_m
        d = self.demand
        # Only demand points a reachable candidate can cover change: within 2 reaches.
        near = haversine_m(d.lat, d.lon, need.point.lat, need.point.lon) <= 2 * reach_m
        if not near.any():
            return np.zeros(len(pool))
        covers = (
            haversine_m(lat[:, None], lon[:, None], d.lat[near][None, :], d.lon[near][None, :])
            <= reach_m
        )
        k = covers.sum(axis=0)
        q = self.busy_fraction
        marginal = d.weight[near] * (1.0 - q) * np.power(q, np.maximum(k - 1, 0))
        result: FloatArray = covers.astype(np.float64) @ marginal
        return result


def coverage_demand(
    zones: ZoneIndex,
    rates: Mapping[str, float] | None,
    default_rate: float,
    params: Mapping[str, float] | None,
) -> tuple[Demand, Mapping[str, float]]:
    """The demand model and the coverage parameters; config/simulation.json's
    ``arrivals_per_hour`` and ``policy`` for what is not given."""
    if rates is None or params is None:
        from dispatch.simulation.scenario import load_sim_config

        config = load_sim_config()
        rates = config.zone_rates if rates is None else rates
        default_rate = config.rate_default if rates is config.zone_rates else default_rate
        params = config.policy if params is None else params
    demand = Demand.from_zones(
        zones,
        rates,
        default_rate=default_rate,
        points_per_zone=int(params.get("points_per_zone", 12)),
    )
    return demand, params


def policy_named(
    name: str,
    *,
    zones: ZoneIndex | None = None,
    rates: Mapping[str, float] | None = None,
    default_rate: float = 1.0,
    params: Mapping[str, float] | None = None,
) -> Policy:
    """The policy of that name (``POLICY_NAMES``); ``coverage`` needs the zones, and takes
    arrival rates and parameters (config/simulation.json's ``arrivals_per_hour`` and
    ``policy`` when not given). Raises ConfigurationError for an unknown name."""
    if name == "closest_idle":
        return closest_idle
    if name == "coverage":
        if zones is None:
            raise ConfigurationError("the coverage policy needs the zones")
        demand, params = coverage_demand(zones, rates, default_rate, params)
        return CoverageAware(
            demand,
            reach_s=params.get("reach_s", 480.0),
            busy_fraction=params.get("busy_fraction", 0.5),
            time_weight=params.get("time_weight", 0.5),
            hold_priority=int(params.get("hold_priority", 0)),
            hold_s=params.get("hold_s", 0.0),
        )
    raise ConfigurationError(f"unknown dispatch policy {name!r}; choose one of {POLICY_NAMES}")

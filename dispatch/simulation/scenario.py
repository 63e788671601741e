"""Scenario of a simulated day: the city, its fleet, and the seeded stream of emergencies.

Everything random is drawn from ``random.Random`` streams named by the seed (and the
zone), so one seed gives one day, whatever the policy: policies are compared on exactly
the same emergencies, service times and driving noise (common random numbers).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from shapely.geometry import box

from dispatch.demo import demo_fleet, demo_zones, point_inside
from dispatch.engine import TravelModel
from dispatch.errors import ConfigurationError
from dispatch.incident_types import IncidentType, load_incident_types
from geo.points import GeoPoint
from geo.zones import Zone, ZoneIndex

CHANNELS = ("call", "sms", "panic", "vehicle")
# Types that only their own channel reports: a vehicle's panic button is pressed in the
# vehicle (AIS-140), whatever channel_mix says of the others.
CHANNEL_OF_TYPE = {"vehicle_panic": "vehicle"}
# Pre-drawn candidate locations per zone: arrivals pick among them (point-in-polygon
# rejection sampling per incident would dominate the run time of a large city).
_POINTS_PER_ZONE = 256


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The simulator's parameters (config/simulation.json), validated."""

    target_min: float
    zone_target_min: Mapping[str, float]
    rate_default: float
    zone_rates: Mapping[str, float]
    daily_profile: tuple[float, ...]
    type_mix: Mapping[str, float]
    channel_mix: Mapping[str, float]
    dispatch_delay_s: Mapping[str, float]
    accept_delay_s: float
    service_min: Mapping[str, float]
    service_shape: float
    road_factor: float
    speed_kmh: float
    noise_sigma: float
    zone_slack_s: float
    policy: Mapping[str, float] = field(default_factory=dict)
    decline_share: float = 0.0

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SimConfig:
        """Parse and check the JSON object; ConfigurationError names what is wrong."""
        try:
            profile = tuple(float(x) for x in raw["daily_profile"])
            travel = raw["travel"]
            config = cls(
                target_min=float(raw["target_min"]),
                zone_target_min={k: float(v) for k, v in raw.get("zone_target_min", {}).items()},
                rate_default=float(raw["arrivals_per_hour"]["default"]),
                zone_rates={
                    k: float(v) for k, v in raw["arrivals_per_hour"].get("zones", {}).items()
                },
                daily_profile=profile,
                type_mix={k: float(v) for k, v in raw["type_mix"].items()},
                channel_mix={k: float(v) for k, v in raw["channel_mix"].items()},
                dispatch_delay_s={k: float(v) for k, v in raw["dispatch_delay_s"].items()},
                accept_delay_s=float(raw["accept_delay_s"]),
                service_min={k: float(v) for k, v in raw["service_min"].items()},
                service_shape=float(raw["service_shape"]),
                road_factor=float(travel["road_factor"]),
                speed_kmh=float(travel["speed_kmh"]),
                noise_sigma=float(travel.get("noise_sigma", 0.0)),
                zone_slack_s=float(travel.get("zone_slack_s", 120.0)),
                policy={k: float(v) for k, v in raw.get("policy", {}).items()},
                decline_share=float(raw.get("decline_share", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigurationError(f"simulation config is malformed: {err!r}") from err
        if not 0.0 <= config.decline_share < 1.0:
            raise ConfigurationError("decline_share must be in [0, 1)")
        if len(profile) != 24 or min(profile) < 0 or sum(profile) <= 0:
            raise ConfigurationError("daily_profile must be 24 non-negative hourly weights")
        if not set(config.channel_mix) <= set(CHANNELS):
            raise ConfigurationError(f"channel_mix: channels are {CHANNELS}")
        own = {CHANNEL_OF_TYPE[t] for t in config.type_mix if t in CHANNEL_OF_TYPE}
        if not set(config.channel_mix) | own <= set(config.dispatch_delay_s):
            raise ConfigurationError(
                "dispatch_delay_s must list every channel of channel_mix, and 'vehicle' when"
                " type_mix has vehicle_panic"
            )
        return config

    def unknown_zones(self, zone_ids: Iterable[str]) -> list[str]:
        """Zones named by rates or targets that are not among ``zone_ids`` (a typo would
        otherwise silently fall back to the defaults)."""
        known = set(zone_ids)
        return sorted((set(self.zone_rates) | set(self.zone_target_min)) - known)

    def rate_of(self, zone_id: str) -> float:
        """Reports per hour in the zone at load 1, averaged over the day."""
        return self.zone_rates.get(zone_id, self.rate_default)

    def target_s(self, zone_id: str | None) -> float:
        """The response-time target of the zone, in seconds."""
        minutes = self.zone_target_min.get(zone_id or "", self.target_min)
        return minutes * 60.0

    def profile_at(self, t_s: float) -> float:
        """The daily profile's multiplier at ``t_s`` seconds after midnight (mean 1)."""
        mean = sum(self.daily_profile) / 24.0
        return self.daily_profile[int(t_s // 3600) % 24] / mean

    def travel_model(self) -> TravelModel:
        """The engine's travel model with the simulator's speeds."""
        return TravelModel(
            road_factor=self.road_factor, speed_kmh=self.speed_kmh, zone_slack_s=self.zone_slack_s
        )


def load_sim_config(path: str | None = None) -> SimConfig:
    """config/simulation.json, or another file of the same shape."""
    if path is None:
        text = resources.files("config").joinpath("simulation.json").read_text("utf-8")
    else:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    return SimConfig.from_dict(json.loads(text))


@dataclass(frozen=True, slots=True)
class SimUnit:
    """A simulated ERV: where it patrols from and what it can do."""

    id: str
    agency: str
    zone_id: str
    base: GeoPoint
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True)
class City:
    """Zones, fleet and where emergencies happen."""

    zones: ZoneIndex
    units: tuple[SimUnit, ...]
    points: Mapping[str, tuple[GeoPoint, ...]]  # candidate incident points per zone

    @property
    def zone_ids(self) -> list[str]:
        """Zone ids, sorted."""
        return sorted(z.id for z in self.zones)


def _points(zones: Sequence[Zone], tag: str) -> dict[str, tuple[GeoPoint, ...]]:
    out: dict[str, tuple[GeoPoint, ...]] = {}
    for zone in zones:
        rng = random.Random(f"erss-sim-points:{tag}:{zone.id}")  # noqa: S311 (simulation)
        out[zone.id] = tuple(point_inside(zone, rng) for _ in range(_POINTS_PER_ZONE))
    return out


def demo_city() -> City:
    """The Bhubaneswar demo city with the demo fleet at its demo positions."""
    zones = demo_zones()
    units = tuple(
        SimUnit(u.id, u.agency, u.zone_id, u.position, frozenset(u.capabilities))
        for u in demo_fleet(zones)
    )
    return City(ZoneIndex(zones), units, _points(zones, "demo"))


def grid_city(side: int, cell_km: float = 3.0) -> City:
    """A synthetic large city: ``side`` x ``side`` square zones of ``cell_km``, each with
    two PCRs (the first with a woman officer) and one ambulance, placed at seeded points."""
    lat0, lon0 = 20.0, 85.5
    dlat = cell_km / 111.32
    dlon = cell_km / (111.32 * math.cos(math.radians(lat0)))
    zones = [
        Zone(
            f"g{r:03d}-{c:03d}",
            f"Grid {r},{c}",
            box(lon0 + c * dlon, lat0 + r * dlat, lon0 + (c + 1) * dlon, lat0 + (r + 1) * dlat),
        )
        for r in range(side)
        for c in range(side)
    ]
    units: list[SimUnit] = []
    for zone in zones:
        rng = random.Random(f"erss-sim-grid:{zone.id}")  # noqa: S311 (simulation)
        for agency, code, count in (("police", "pcr", 2), ("ambulance", "amb", 1)):
            for n in range(1, count + 1):
                caps = frozenset({"woman_officer"}) if (code, n) == ("pcr", 1) else frozenset()
                units.append(
                    SimUnit(f"{zone.id}-{code}-{n}", agency, zone.id, point_inside(zone, rng), caps)
                )
    return City(ZoneIndex(zones), tuple(units), _points(zones, f"grid{side}"))


@dataclass(frozen=True, slots=True)
class Arrival:
    """One emergency: when, where, what, through which channel, and its random draws."""

    id: int
    t_s: float
    zone_id: str
    point: GeoPoint
    type: str
    channel: str
    # Per agency of the plan: time on scene, and the delay before the MDT accepts.
    service_s: Mapping[str, float]
    accept_s: Mapping[str, float]
    # Actual driving time over the travel model's estimate (log-normal, mean 1).
    drive_factor: float


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    names = sorted(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def arrivals(
    city: City,
    config: SimConfig,
    *,
    seed: int,
    hours: float = 24.0,
    load: float = 1.0,
    types: Mapping[str, IncidentType] | None = None,
) -> list[Arrival]:
    """The seeded emergencies of ``hours`` hours from midnight, sorted by time.

    Per zone, a non-homogeneous Poisson process of rate ``rate_of(zone) * load *
    profile(t)`` (by thinning), each zone with its own random stream so that adding a
    zone does not change the others' arrivals.
    """
    kinds = types if types is not None else load_incident_types()
    unknown = set(config.type_mix) - set(kinds)
    if unknown:
        raise ConfigurationError(f"type_mix names unknown incident types: {sorted(unknown)}")
    peak = max(config.daily_profile) / (sum(config.daily_profile) / 24.0)
    horizon = hours * 3600.0
    drawn: list[tuple[float, str, GeoPoint, str, str, dict[str, float], dict[str, float], float]]
    drawn = []
    for zone_id in city.zone_ids:
        rate_max = config.rate_of(zone_id) * load * peak / 3600.0
        if rate_max <= 0:
            continue
        rng = random.Random(f"erss-sim:{seed}:{zone_id}")  # noqa: S311 (simulation)
        t = 0.0
        pool = city.points[zone_id]
        while True:
            t += rng.expovariate(rate_max)
            if t >= horizon:
                break
            if rng.random() * peak > config.profile_at(t):
                continue
            kind = _pick(rng, config.type_mix)
            # Drawn even when the type has its own channel: the random stream stays the same.
            channel = CHANNEL_OF_TYPE.get(kind, _pick(rng, config.channel_mix))
            point = pool[rng.randrange(len(pool))]
            plan = kinds[kind].plan
            mean_s = {a: config.service_min.get(a, 30.0) * 60.0 for a in plan}
            shape = config.service_shape
            service = {a: rng.gammavariate(shape, mean_s[a] / shape) for a in plan}
            accept = {a: rng.expovariate(1.0 / config.accept_delay_s) for a in plan}
            sigma = config.noise_sigma
            factor = math.exp(rng.gauss(-sigma * sigma / 2.0, sigma)) if sigma > 0 else 1.0
            drawn.append((t, zone_id, point, kind, channel, service, accept, factor))
    drawn.sort(key=lambda d: (d[0], d[1]))
    return [Arrival(i, *d) for i, d in enumerate(drawn)]


def expected_arrivals(city: City, config: SimConfig, *, hours: float, load: float) -> float:
    """The mean number of emergencies ``arrivals`` draws (whole hours from midnight)."""
    profile = sum(config.profile_at(h * 3600.0) for h in range(int(hours)))
    return sum(config.rate_of(z) for z in city.zone_ids) * load * profile

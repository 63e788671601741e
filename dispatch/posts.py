"""Standby posts: where a unit waits for its next job once it has finished one.

By default crews go back to their own patrol and the engine says nothing. With the
coverage rule, the engine names a post: among the candidate posts of the unit's home
zone (it stays in its station's jurisdiction), the one that adds the most expected
coverage, given where the agency's other idle units stand. This is the dynamic MEXCLP
redeployment rule of Jagtenberg, Bhulai and van der Mei (2015), "An efficient heuristic
for real-time ambulance redeployment", Operations Research for Health Care 4, restricted
to the moment a unit becomes free (no unit is moved while it waits).

A demand point ``i`` of weight ``w_i`` already covered by ``k_i`` idle units gains
``w_i * (1 - q) * q**k_i`` from one more, where ``q`` is the fraction of time a unit
is busy (Daskin's MEXCLP). Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dispatch.core.facts import TravelModel
from dispatch.errors import ConfigurationError
from dispatch.simulation.policies import (
    Demand,
    FloatArray,
    check_coverage_params,
    coverage_demand,
    haversine_m,
)
from geo.points import GeoPoint
from geo.zones import ZoneIndex

STANDBY_POLICIES = ("patrol", "coverage")
_M_PER_DEG_LAT = 111_000.0  # under haversine's ~111,195 m per degree: margins err wide


@dataclass(frozen=True, slots=True)
class Post:
    """A standby post named for a unit, with the expected coverage it adds there."""

    point: GeoPoint
    zone_id: str
    gain: float  # reports per hour that one more idle unit there would reach in time


@dataclass(frozen=True, slots=True)
class _ZoneCover:
    lat: FloatArray  # the zone's candidate posts
    lon: FloatArray
    near: npt.NDArray[np.intp]  # demand points within reach of some post
    reaches: FloatArray  # posts x near points: 1.0 where the post reaches the point
    area: tuple[float, float, float, float]  # CoveragePosts.area


class CoveragePosts:
    """The coverage rule for standby posts (see the module docstring).

    Candidate posts are the demand points of each zone (seeded points inside it, which a
    deployment can replace with its real posts); ``reach_s`` is the travel-time budget
    and ``busy_fraction`` MEXCLP's q, as for the coverage dispatch policy.
    """

    def __init__(
        self,
        demand: Demand,
        model: TravelModel,
        *,
        reach_s: float = 480.0,
        busy_fraction: float = 0.5,
    ) -> None:
        check_coverage_params(reach_s=reach_s, busy_fraction=busy_fraction)
        self.demand = demand
        self.busy_fraction = busy_fraction
        self.reach_m = reach_s / model.seconds_per_m()
        self._zones = {str(z): np.flatnonzero(demand.zone == z) for z in np.unique(demand.zone)}
        self._cover: dict[str, _ZoneCover] = {}

    def _zone_cover(self, zone_id: str) -> _ZoneCover | None:
        """The zone's posts and the demand points they reach, computed once."""
        cached = self._cover.get(zone_id)
        if cached is not None:
            return cached
        candidates = self._zones.get(zone_id)
        if candidates is None or not len(candidates):
            return None
        d = self.demand
        lat, lon = d.lat[candidates], d.lon[candidates]
        reaches = haversine_m(lat[:, None], lon[:, None], d.lat[None, :], d.lon[None, :])
        reaches_any = (reaches <= self.reach_m).any(axis=0)
        near = np.flatnonzero(reaches_any)
        cover = _ZoneCover(
            lat,
            lon,
            near,
            (reaches[:, near] <= self.reach_m).astype(np.float64),
            self._area(lat, lon),
        )
        self._cover[zone_id] = cover
        return cover

    def area(self, zone_id: str) -> tuple[float, float, float, float] | None:
        """(min lat, min lon, max lat, max lon) holding every idle unit that could share
        coverage with a post of the zone (within two reaches of one); None for a zone
        with no post."""
        cover = self._zone_cover(zone_id)
        return None if cover is None else cover.area

    def _area(self, lat: FloatArray, lon: FloatArray) -> tuple[float, float, float, float]:
        margin_lat = 2 * self.reach_m / _M_PER_DEG_LAT
        widest = max(abs(float(lat.min())), abs(float(lat.max())))
        margin_lon = margin_lat / math.cos(math.radians(min(89.0, widest + margin_lat)))
        return (
            float(lat.min()) - margin_lat,
            float(lon.min()) - margin_lon,
            float(lat.max()) + margin_lat,
            float(lon.max()) + margin_lon,
        )

    def choose(
        self, zone_id: str | None, here: GeoPoint, others: Sequence[GeoPoint]
    ) -> Post | None:
        """The post of ``zone_id`` adding the most coverage given the ``others`` (where
        the agency's other idle units stand or are headed); the nearest to ``here`` among
        equals. None when the zone has no candidate post."""
        cover = self._zone_cover(zone_id or "")
        if cover is None:
            return None
        d = self.demand
        # Only demand points some candidate post reaches can change the choice.
        near_lat, near_lon = d.lat[cover.near], d.lon[cover.near]
        k = np.zeros(len(cover.near))
        if others:
            lat = np.fromiter((p.lat for p in others), float, len(others))
            lon = np.fromiter((p.lon for p in others), float, len(others))
            # Units farther than two reaches from every post cover none of these points.
            lat0, lon0, lat1, lon1 = cover.area
            inside = (lat >= lat0) & (lat <= lat1) & (lon >= lon0) & (lon <= lon1)
            lat, lon = lat[inside], lon[inside]
            k = (
                haversine_m(lat[:, None], lon[:, None], near_lat[None, :], near_lon[None, :])
                <= self.reach_m
            ).sum(axis=0)
        q = self.busy_fraction
        marginal = d.weight[cover.near] * (1.0 - q) * np.power(q, k)
        gain = cover.reaches @ marginal
        drive = haversine_m(cover.lat, cover.lon, here.lat, here.lon)
        # Largest gain first; among equal gains (to rounding), the shortest drive.
        best = min(
            range(len(cover.lat)), key=lambda i: (-round(float(gain[i]), 9), float(drive[i]))
        )
        return Post(
            GeoPoint(lat=float(cover.lat[best]), lon=float(cover.lon[best])),
            str(zone_id),
            float(gain[best]),
        )


def standby_named(
    name: str,
    *,
    zones: ZoneIndex,
    model: TravelModel,
    rates: Mapping[str, float] | None = None,
    default_rate: float = 1.0,
    params: Mapping[str, float] | None = None,
) -> CoveragePosts | None:
    """The standby-post rule of that name (``STANDBY_POLICIES``): None for ``patrol``
    (crews go back to their own patrol), the coverage rule for ``coverage``, with the
    same demand and parameters as the coverage dispatch policy."""
    if name == "patrol":
        return None
    if name == "coverage":
        demand, params = coverage_demand(zones, rates, default_rate, params)
        return CoveragePosts(
            demand,
            model,
            reach_s=params.get("reach_s", 480.0),
            busy_fraction=params.get("busy_fraction", 0.5),
        )
    raise ConfigurationError(f"unknown standby policy {name!r}; choose one of {STANDBY_POLICIES}")

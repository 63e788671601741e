"""Police-station jurisdictions: GeoJSON polygons indexed for point-in-zone queries."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shapely import STRtree
from shapely import box as box_around
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points
from shapely.validation import explain_validity

from geo.distance import distance_m
from geo.points import GeoPoint


class ZoneError(ValueError):
    """A zone feature that cannot be used, named so the data can be fixed."""

    def __init__(self, feature: str, reason: str) -> None:
        super().__init__(f"zone feature {feature}: {reason}")
        self.feature = feature
        self.reason = reason


@dataclass(frozen=True)
class Zone:
    """One jurisdiction: a stable id, a display name and its polygon."""

    id: str
    name: str
    geometry: BaseGeometry = field(compare=False, repr=False)

    def contains(self, point: GeoPoint) -> bool:
        """Whether the point lies inside or on the border of this zone."""
        return bool(self.geometry.covers(point.to_shapely()))


def slugify(name: str) -> str:
    """A zone id from a station name: 'Kharavel Nagar Police Station' -> 'kharavel-nagar'."""
    base = re.sub(r"\s+police\s+station\s*$", "", name.strip(), flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")


def zones_from_geojson(collection: Mapping[str, Any]) -> list[Zone]:
    """Parse a GeoJSON FeatureCollection of (Multi)Polygons into zones.

    The id is the feature's ``id``, else ``properties.id``, else a slug of the name.
    Raises ZoneError naming the feature for anything unusable.
    """
    if collection.get("type") != "FeatureCollection":
        raise ZoneError("<root>", "expected a GeoJSON FeatureCollection")
    zones: list[Zone] = []
    seen: set[str] = set()
    for index, feature in enumerate(collection.get("features") or []):
        props = feature.get("properties") or {}
        name = props.get("name") or props.get("Name")
        label = f"#{index} ({name or 'unnamed'})"
        if not name:
            raise ZoneError(label, "has no name property")
        zone_id = str(feature.get("id") or props.get("id") or slugify(str(name)))
        if zone_id in seen:
            raise ZoneError(label, f"duplicate zone id {zone_id!r}")
        try:
            geometry = shape(feature["geometry"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ZoneError(label, f"unreadable geometry: {err}") from err
        if geometry.geom_type not in ("Polygon", "MultiPolygon"):
            raise ZoneError(label, f"geometry is {geometry.geom_type}, not a polygon")
        if not geometry.is_valid:
            raise ZoneError(label, f"invalid polygon: {explain_validity(geometry)}")
        seen.add(zone_id)
        zones.append(Zone(id=zone_id, name=str(name), geometry=geometry))
    if not zones:
        raise ZoneError("<root>", "the collection has no features")
    return zones


class ZoneIndex:
    """Point-in-zone and neighbour queries over a fixed set of zones (an STRtree)."""

    def __init__(self, zones: Iterable[Zone]) -> None:
        # Sorted by id so that a point on a shared border resolves to the same zone
        # on every instance and every run.
        self._zones = sorted(zones, key=lambda z: z.id)
        self._by_id = {z.id: z for z in self._zones}
        self._tree = STRtree([z.geometry for z in self._zones])
        self._neighbours = self._compute_neighbours()

    def _compute_neighbours(self) -> dict[str, tuple[str, ...]]:
        result: dict[str, list[str]] = {z.id: [] for z in self._zones}
        for i, zone in enumerate(self._zones):
            for j in self._tree.query(zone.geometry, predicate="intersects"):
                other = self._zones[int(j)]
                if int(j) != i:
                    result[zone.id].append(other.id)
        return {k: tuple(sorted(v)) for k, v in result.items()}

    def __len__(self) -> int:
        return len(self._zones)

    def __iter__(self) -> Any:
        return iter(self._zones)

    def get(self, zone_id: str) -> Zone | None:
        """The zone with this id, or None."""
        return self._by_id.get(zone_id)

    def zone_of(self, point: GeoPoint, *, tolerance_m: float = 0.0) -> Zone | None:
        """The zone containing the point (first by id on a shared border), or None.

        Real jurisdiction polygons have sliver gaps between neighbours and slightly
        misdrawn outer borders: a point outside every polygon but within
        ``tolerance_m`` of one belongs to the nearest; farther out it belongs to none.
        """
        hits = self._tree.query(point.to_shapely(), predicate="intersects")
        if len(hits) > 0:
            return self._zones[int(min(hits))]
        if tolerance_m <= 0:
            return None
        nearest = self.nearest(point)
        if nearest is None or nearest[1] > tolerance_m:
            return None
        return nearest[0]

    def nearest(self, point: GeoPoint) -> tuple[Zone, float] | None:
        """The zone whose border is nearest to the point, and that distance in metres."""
        index = self._tree.nearest(point.to_shapely())
        if index is None:
            return None
        zone = self._zones[int(index)]
        return zone, self.distance_to(zone, point)

    @staticmethod
    def distance_to(zone: Zone, point: GeoPoint) -> float:
        """Metres from the point to the zone (0 inside it)."""
        here = point.to_shapely()
        if zone.geometry.covers(here):
            return 0.0
        _, on_border = nearest_points(here, zone.geometry)
        return distance_m(point, GeoPoint.from_shapely(on_border))

    def zones_within(self, point: GeoPoint, radius_m: float) -> list[Zone]:
        """Every zone that the circle of uncertainty around the point overlaps, by id."""
        # A degree of longitude shrinks with latitude; the box is a cheap first cut and
        # the exact test is the geodesic distance to each candidate zone.
        dlat = radius_m / 111_320
        dlon = dlat / max(0.01, math.cos(math.radians(point.lat)))
        box = box_around(point.lon - dlon, point.lat - dlat, point.lon + dlon, point.lat + dlat)
        found = [self._zones[int(i)] for i in self._tree.query(box, predicate="intersects")]
        return sorted(
            (z for z in found if self.distance_to(z, point) <= radius_m), key=lambda z: z.id
        )

    def swapped(self, point: GeoPoint) -> Zone | None:
        """The zone the point would fall in with latitude and longitude exchanged.

        A sender that puts longitude first (Traccar-style, or a GeoJSON habit) gives a
        point far from the city; the exchanged one landing inside a zone is a strong
        sign of that mistake, to show operators rather than plot silently.
        """
        if abs(point.lon) > 90:
            return None
        return self.zone_of(GeoPoint(lat=point.lon, lon=point.lat))

    def neighbours(self, zone_id: str) -> tuple[str, ...]:
        """Ids of the zones whose polygons touch this one."""
        return self._neighbours.get(zone_id, ())

"""Police-station jurisdictions: GeoJSON polygons indexed for point-in-zone queries."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shapely import STRtree
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

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

    def zone_of(self, point: GeoPoint) -> Zone | None:
        """The zone containing the point (first by id on a shared border), or None."""
        hits = self._tree.query(point.to_shapely(), predicate="intersects")
        if len(hits) == 0:
            return None
        return self._zones[int(min(hits))]

    def neighbours(self, zone_id: str) -> tuple[str, ...]:
        """Ids of the zones whose polygons touch this one."""
        return self._neighbours.get(zone_id, ())

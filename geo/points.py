"""Geographic points: the one way to build a coordinate in this project.

Coordinates are WGS84 degrees. Shapely and GeoJSON take (lon, lat); people and PIDF-LO
say (lat, lon). To keep the two from being mixed up, nothing here takes a bare tuple:
a point is built with keyword arguments and converted explicitly at the shapely edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shapely.geometry import Point as ShapelyPoint


class InvalidCoordinate(ValueError):
    """A latitude or longitude that cannot be a place on Earth."""

    def __init__(self, lat: object, lon: object, reason: str) -> None:
        super().__init__(f"invalid coordinate lat={lat!r} lon={lon!r}: {reason}")
        self.lat = lat
        self.lon = lon
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A validated WGS84 position."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        for name, value in (("lat", self.lat), ("lon", self.lon)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidCoordinate(self.lat, self.lon, f"{name} is not a number")
            if not math.isfinite(value):
                raise InvalidCoordinate(self.lat, self.lon, f"{name} is not finite")
        if not -90.0 <= self.lat <= 90.0:
            raise InvalidCoordinate(self.lat, self.lon, "latitude outside -90..90")
        if not -180.0 <= self.lon <= 180.0:
            raise InvalidCoordinate(self.lat, self.lon, "longitude outside -180..180")

    def to_shapely(self) -> ShapelyPoint:
        """The shapely point, in shapely's (x=lon, y=lat) order."""
        return ShapelyPoint(self.lon, self.lat)

    @classmethod
    def from_shapely(cls, point: ShapelyPoint) -> GeoPoint:
        """Build from a shapely point (x=lon, y=lat)."""
        return cls(lat=float(point.y), lon=float(point.x))

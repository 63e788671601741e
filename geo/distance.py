"""Distances and travel-time estimates between points."""

from __future__ import annotations

from geopy.distance import geodesic

from geo.points import GeoPoint


def distance_m(a: GeoPoint, b: GeoPoint) -> float:
    """Geodesic (WGS84 ellipsoid) distance in metres."""
    return float(geodesic((a.lat, a.lon), (b.lat, b.lon)).meters)


def travel_time_s(
    a: GeoPoint, b: GeoPoint, *, road_factor: float = 1.4, speed_kmh: float = 30.0
) -> float:
    """Estimated driving time in seconds.

    Roads are longer than the straight line, so the geodesic distance is stretched by
    ``road_factor`` (1.3 to 1.5 is typical for Indian cities) and driven at an average
    urban ``speed_kmh``.
    """
    if road_factor <= 0 or speed_kmh <= 0:
        raise ValueError("road_factor and speed_kmh must be positive")
    return distance_m(a, b) * road_factor / (speed_kmh / 3.6)

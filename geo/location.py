"""Location evidence: a point with its uncertainty and where it came from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from geo.points import GeoPoint, InvalidCoordinate


class InvalidLocation(ValueError):
    """Location evidence that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Location:
    """A position fix: point, radius of uncertainty in metres, method, time of the fix."""

    point: GeoPoint
    radius_m: float | None
    method: str
    time: datetime | None = None


def location_from_fix(
    *,
    lat: float,
    lon: float,
    radius_m: float | None,
    method: str,
    time: datetime | None = None,
) -> Location:
    """Validate raw fix values into a Location, or raise InvalidLocation saying why.

    0,0 is refused: it is in the Gulf of Guinea and, in practice, a device that had
    no fix and filled the fields with zeros.
    """
    try:
        point = GeoPoint(lat=lat, lon=lon)
    except InvalidCoordinate as err:
        raise InvalidLocation(err.reason + f" (lat={lat!r}, lon={lon!r})") from err
    if point.lat == 0.0 and point.lon == 0.0:
        raise InvalidLocation("position 0,0 is a placeholder, not a fix")
    if radius_m is not None and (not math.isfinite(radius_m) or radius_m < 0):
        raise InvalidLocation(f"uncertainty radius {radius_m!r} m is not a distance")
    return Location(point=point, radius_m=radius_m, method=method, time=time)

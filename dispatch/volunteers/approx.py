"""An approximate location for a volunteer who has not accepted yet: enough to decide
whether to go, not enough to find the caller's door."""

from __future__ import annotations

import math

from geo.points import GeoPoint

_M_PER_DEG_LAT = 111_320.0


def approximate(point: GeoPoint, grid_m: float) -> GeoPoint:
    """``point`` snapped to the centre of its cell of a grid of about ``grid_m`` metres.

    Snapping, not adding noise: the same place always gives the same answer, so asking
    again (or many volunteers comparing notes) reveals nothing finer than the cell.
    """
    lat_step = grid_m / _M_PER_DEG_LAT
    lat = (math.floor(point.lat / lat_step) + 0.5) * lat_step
    # The longitude step from the cell's latitude, not the point's, so that every point
    # of a cell shares one grid.
    lon_step = grid_m / (_M_PER_DEG_LAT * max(math.cos(math.radians(lat)), 0.01))
    lon = (math.floor(point.lon / lon_step) + 0.5) * lon_step
    # Clamped: a cell's centre past a pole or the antimeridian is not a coordinate.
    return GeoPoint(
        lat=round(min(max(lat, -90.0), 90.0), 6), lon=round(min(max(lon, -180.0), 180.0), 6)
    )

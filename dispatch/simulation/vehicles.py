"""Simulated vehicle panic buttons: what a state's tracking backend posts for a bus or
cab whose emergency button is pressed. Pure: the live simulator posts them."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any

from dispatch.simulation.scenario import Arrival
from geo.points import GeoPoint

# After the button, the tracker keeps reporting while the vehicle drives on a little
# (to a safe place to stop): this many fixes, this far apart in simulated seconds.
MOVES = 2
MOVE_EVERY_S = 30.0
_SPEED_MS = 6.0  # about 20 km/h in city traffic


def vehicle_alerts(arrival: Arrival, seed: int) -> list[tuple[float, dict[str, Any]]]:
    """The backend's alerts for one pressed button, each with its simulated delay after
    the one before: the emergency at the arrival's point, then the moving vehicle's
    tracking fixes (each moves the incident, and its offered unit's MDT sees it)."""
    rng = random.Random(f"erss-sim-vehicle:{seed}:{arrival.id}")  # noqa: S311 (simulation)
    imei = f"86{seed % 1000:03d}{arrival.id:010d}"
    registration = f"OD02S{arrival.id % 10000:04d}"
    heading = rng.uniform(0.0, 360.0)
    point = arrival.point
    alerts: list[tuple[float, dict[str, Any]]] = [
        (0.0, _alert(f"sim-{seed}-{arrival.id}", imei, registration, "emergency", point, heading))
    ]
    for n in range(1, MOVES + 1):
        point = _ahead(point, heading, _SPEED_MS * MOVE_EVERY_S)
        ident = f"sim-{seed}-{arrival.id}-fix-{n}"
        alerts.append((MOVE_EVERY_S, _alert(ident, imei, registration, "tracking", point, heading)))
    return alerts


def _alert(
    ident: str, imei: str, registration: str, kind: str, point: GeoPoint, heading: float
) -> dict[str, Any]:
    return {
        "alert_id": ident,
        "imei": imei,
        "registration": registration,
        "operator": "Simulated city bus",
        "vehicle_type": "bus",
        "alert_type": kind,
        "location": {"lat": point.lat, "lon": point.lon, "accuracy_m": 10.0},
        "speed_kmh": _SPEED_MS * 3.6,
        "heading_deg": round(heading, 1),
        # The backend's real clock: each fix is newer than the last, as the server needs.
        "time": datetime.now(UTC).isoformat(),
    }


def _ahead(point: GeoPoint, heading_deg: float, metres: float) -> GeoPoint:
    north = metres * math.cos(math.radians(heading_deg))
    east = metres * math.sin(math.radians(heading_deg))
    lat = point.lat + north / 111_320.0
    lon = point.lon + east / (111_320.0 * math.cos(math.radians(point.lat)))
    return GeoPoint(lat=lat, lon=lon)

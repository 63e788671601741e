"""Where an incident is for dispatch: its zone, the other zones its location may be in,
and why it has none. Pure: over the zone index the shell holds, no I/O."""

from __future__ import annotations

from geo.location import Location
from geo.points import GeoPoint
from geo.zones import Zone, ZoneIndex


def zone_id_of(zones: ZoneIndex, point: GeoPoint) -> str | None:
    """The id of the zone a point is in (no tolerance: a unit's own fix), or None."""
    zone = zones.zone_of(point)
    return zone.id if zone is not None else None


def other_zones(zones: ZoneIndex, location: Location, zone: Zone | None) -> list[str]:
    """Other zones the location's circle of uncertainty overlaps (shown to operators)."""
    if not location.radius_m:
        return []
    return [
        z.id
        for z in zones.zones_within(location.point, location.radius_m)
        if zone is None or z.id != zone.id
    ]


def outside_reason(zones: ZoneIndex, point: GeoPoint) -> str:
    """Why a point has no zone, flagging coordinates that look exchanged."""
    swapped = zones.swapped(point)
    if swapped is None:
        return "location outside every jurisdiction"
    return (
        "location outside every jurisdiction; with latitude and longitude exchanged it"
        f" would be in {swapped.name}: the sender may have swapped them (not plotted there)"
    )

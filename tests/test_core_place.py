"""dispatch.core.place without I/O: an incident's zone, the zones its uncertainty
overlaps, and why it has none."""

from __future__ import annotations

from dispatch.core.place import other_zones, outside_reason, zone_id_of
from dispatch.demo import demo_zones
from geo.location import Location
from geo.points import GeoPoint
from geo.zones import ZoneIndex
from tests.test_walking_skeleton import zone_point

ZONES = ZoneIndex(demo_zones())


def test_a_point_inside_a_zone_is_in_it_and_a_wide_circle_overlaps_others() -> None:
    point = zone_point("capital")
    assert zone_id_of(ZONES, point) == "capital"
    zone = ZONES.get("capital")
    assert other_zones(ZONES, Location(point, None, "gps"), zone) == []
    wide = other_zones(ZONES, Location(point, 5_000.0, "cell"), zone)
    assert wide
    assert "capital" not in wide
    assert set(wide) <= {z.id for z in ZONES}


def test_outside_every_zone_names_exchanged_coordinates() -> None:
    point = zone_point("capital")
    swapped = GeoPoint(lat=point.lon - 60.0, lon=point.lat)  # nowhere near Odisha
    assert zone_id_of(ZONES, swapped) is None
    assert outside_reason(ZONES, swapped) == "location outside every jurisdiction"
    exchanged = GeoPoint(lat=point.lon, lon=point.lat)
    assert zone_id_of(ZONES, exchanged) is None
    assert outside_reason(ZONES, exchanged) == (
        "location outside every jurisdiction; with latitude and longitude exchanged it"
        f" would be in {ZONES.get('capital').name}: the sender may have swapped them"  # type: ignore[union-attr]
        " (not plotted there)"
    )

"""Zones and ranking on the real Bhubaneswar jurisdictions, without any server."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from dispatch.demo import demo_fleet, demo_zones
from dispatch.engine import Need, Tier, TravelModel, UnitSnapshot, closest_idle
from geo.location import InvalidLocation, Location, location_from_fix
from geo.points import GeoPoint, InvalidCoordinate
from geo.zones import ZoneError, ZoneIndex, slugify, zones_from_geojson
from tests.conftest import FIXTURES

OSM_POLICE_POINTS = FIXTURES / "geo" / "osm_police_points_bhubaneswar.geojson"


@pytest.fixture(scope="module")
def index() -> ZoneIndex:
    return ZoneIndex(demo_zones())


def test_real_city_has_17_zones_and_38_neighbour_pairs(index: ZoneIndex) -> None:
    assert len(index) == 17
    pairs = sum(len(index.neighbours(z.id)) for z in index)
    assert pairs == 2 * 38
    assert "kharavel-nagar" in index.neighbours("capital")
    assert "capital" in index.neighbours("kharavel-nagar")


def test_each_demo_unit_stands_in_its_own_zone(index: ZoneIndex) -> None:
    fleet = demo_fleet(demo_zones())
    assert len(fleet) == 17 * 3
    for unit in fleet:
        zone = index.zone_of(unit.position)
        assert zone is not None
        assert zone.id == unit.zone_id


def test_point_outside_the_city_has_no_zone(index: ZoneIndex) -> None:
    assert index.zone_of(GeoPoint(lat=28.6139, lon=77.2090)) is None


def test_shared_border_resolves_deterministically(index: ZoneIndex) -> None:
    capital = index.get("capital")
    neighbour = index.get("kharavel-nagar")
    assert capital is not None
    assert neighbour is not None
    border = capital.geometry.boundary.intersection(neighbour.geometry.boundary)
    point = GeoPoint.from_shapely(border.representative_point())
    found = {index.zone_of(point) for _ in range(5)}
    assert len(found) == 1
    zone = found.pop()
    assert zone is not None
    assert zone.id in {"capital", "kharavel-nagar"}


def test_swapped_or_impossible_coordinates_are_refused() -> None:
    with pytest.raises(InvalidCoordinate, match="latitude"):
        GeoPoint(lat=123.0, lon=85.8)
    with pytest.raises(InvalidLocation, match="0,0"):
        location_from_fix(lat=0.0, lon=0.0, radius_m=10, method="gps")
    with pytest.raises(InvalidLocation, match="radius"):
        location_from_fix(lat=20.0, lon=85.0, radius_m=-1, method="gps")


def test_invalid_polygon_names_the_feature() -> None:
    bowtie = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "Bowtie Police Station"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
                },
            }
        ],
    }
    with pytest.raises(ZoneError, match="Bowtie"):
        zones_from_geojson(bowtie)


def _unit(
    unit_id: str, zone: str | None, lat: float, lon: float, agency: str = "police"
) -> UnitSnapshot:
    return UnitSnapshot(unit_id, agency, zone, GeoPoint(lat=lat, lon=lon))


def _need(**extra: object) -> Need:
    return Need(
        point=GeoPoint(lat=20.0, lon=85.0),
        zone_id="a",
        neighbour_zone_ids=frozenset({"b"}),
        agency="police",
        **extra,  # type: ignore[arg-type]
    )


def test_own_zone_unit_goes_first_when_within_the_slack() -> None:
    """1.0 km own (168 s) against 0.5 km neighbour (84 s): 84 s slower, within 120 s."""
    model = TravelModel(road_factor=1.4, speed_kmh=30, zone_slack_s=120)
    units = [
        _unit("neighbour", "b", 20.0045, 85.0),  # ~500 m
        _unit("own", "a", 20.009, 85.0),  # ~1,000 m
    ]
    ranked = closest_idle(_need(), units, model)
    assert [c.unit_id for c in ranked] == ["own", "neighbour"]
    assert ranked[0].travel_time_s - ranked[1].travel_time_s == pytest.approx(84, abs=3)


def test_nearer_neighbour_wins_beyond_the_slack_then_radius_units() -> None:
    """3.3 km own (554 s) against 110 m neighbour (18 s): far beyond the slack."""
    model = TravelModel(road_factor=1.4, speed_kmh=30, zone_slack_s=120, max_radius_m=15_000)
    units = [
        _unit("near-neighbour", "b", 20.001, 85.0),
        _unit("far-own", "a", 20.03, 85.0),
        _unit("elsewhere", "z", 20.002, 85.0),  # 220 m but another zone: +240 s
        _unit("too-far", "z", 21.0, 85.0),
        _unit("ambulance", "a", 20.0, 85.0, agency="ambulance"),
    ]
    ranked = closest_idle(_need(), units, model)
    assert [c.unit_id for c in ranked] == ["near-neighbour", "elsewhere", "far-own"]
    assert [c.tier for c in ranked] == [Tier.NEIGHBOUR_ZONE, Tier.WITHIN_RADIUS, Tier.OWN_ZONE]


def test_required_capability_is_respected() -> None:
    units = [
        _unit("nearest", "a", 20.0005, 85.0),
        UnitSnapshot(
            "with-woman-officer",
            "police",
            "a",
            GeoPoint(lat=20.01, lon=85.0),
            frozenset({"woman_officer"}),
        ),
    ]
    ranked = closest_idle(_need(capabilities=frozenset({"woman_officer"})), units, TravelModel())
    assert [c.unit_id for c in ranked] == ["with-woman-officer"]


def test_speed_of_the_incidents_zone_is_used() -> None:
    slow = TravelModel(speed_kmh=30, zone_speeds_kmh={"a": 15})
    [fast_estimate] = closest_idle(_need(), [_unit("u", "a", 20.009, 85.0)], TravelModel())
    [slow_estimate] = closest_idle(_need(), [_unit("u", "a", 20.009, 85.0)], slow)
    assert slow_estimate.travel_time_s == pytest.approx(2 * fast_estimate.travel_time_s)


def _outside_by(index: ZoneIndex, metres: float) -> tuple[GeoPoint, str]:
    """A point ``metres`` beyond the city's outer border, and the zone it is nearest to."""
    from shapely.ops import unary_union

    city = unary_union([z.geometry for z in index])
    centre = city.centroid
    far = max(city.exterior.coords, key=lambda c: (c[0] - centre.x) ** 2 + (c[1] - centre.y) ** 2)
    dx, dy = far[0] - centre.x, far[1] - centre.y
    norm = (dx**2 + dy**2) ** 0.5
    step = metres / 111_320
    point = GeoPoint(lat=far[1] + dy / norm * step, lon=far[0] + dx / norm * step * 1.07)
    nearest = index.nearest(point)
    assert nearest is not None
    return point, nearest[0].id


def test_a_point_just_outside_the_border_belongs_to_the_nearest_zone(index: ZoneIndex) -> None:
    near, zone_id = _outside_by(index, 20)
    assert index.zone_of(near) is None
    found = index.zone_of(near, tolerance_m=50)
    assert found is not None
    assert found.id == zone_id
    far, _ = _outside_by(index, 500)
    assert index.zone_of(far, tolerance_m=50) is None


def test_uncertainty_circle_lists_every_zone_it_overlaps(index: ZoneIndex) -> None:
    capital = index.get("capital")
    assert capital is not None
    centre = GeoPoint.from_shapely(capital.geometry.representative_point())
    assert [z.id for z in index.zones_within(centre, 1)] == ["capital"]
    wide = {z.id for z in index.zones_within(centre, 5_000)}
    assert {"capital", "kharavel-nagar", "lingaraj"} <= wide
    assert "balipatana" not in wide


def test_swapped_coordinates_are_recognised(index: ZoneIndex) -> None:
    capital = index.get("capital")
    assert capital is not None
    right = GeoPoint.from_shapely(capital.geometry.representative_point())
    assert index.swapped(GeoPoint(lat=right.lon, lon=right.lat)) == capital
    assert index.swapped(GeoPoint(lat=28.61, lon=77.21)) is None


def test_geofence_hysteresis() -> None:
    from geo.geofence import Crossing, crossing

    assert crossing(distance_outside_m=150, was_outside=False, hysteresis_m=200) is None
    assert crossing(distance_outside_m=250, was_outside=False, hysteresis_m=200) is Crossing.LEFT
    assert crossing(distance_outside_m=50, was_outside=True, hysteresis_m=200) is None
    assert crossing(distance_outside_m=0, was_outside=True, hysteresis_m=200) is Crossing.RETURNED
    assert crossing(distance_outside_m=0, was_outside=False, hysteresis_m=200) is None


def test_great_circle_distance_is_within_half_a_percent_of_the_ellipsoid() -> None:
    from geo.distance import distance_m, ellipsoid_distance_m

    a = GeoPoint(lat=20.2961, lon=85.8245)
    for b in (GeoPoint(lat=20.35, lon=85.82), GeoPoint(lat=20.10, lon=85.95)):
        exact = ellipsoid_distance_m(a, b)
        assert abs(distance_m(a, b) - exact) / exact < 0.005


def test_real_station_points_against_their_jurisdictions(index: ZoneIndex) -> None:
    """The OSM station nodes of Bhubaneswar (tests/fixtures/geo): Khandagiri's building lies
    in its own jurisdiction; Nandankanan's lies in Infocity's, as the data README warns,
    which is why dispatch assigns by polygon, never by nearest station."""
    import json

    collection = json.loads(OSM_POLICE_POINTS.read_text())
    wanted = {"Khandagiri Police Station", "Nandankanan Police Station"}
    stations = {
        f["properties"]["name"]: GeoPoint(
            lat=f["geometry"]["coordinates"][1], lon=f["geometry"]["coordinates"][0]
        )
        for f in collection["features"]
        if f["properties"].get("name") in wanted
    }
    khandagiri = index.zone_of(stations["Khandagiri Police Station"])
    nandankanan = index.zone_of(stations["Nandankanan Police Station"])
    assert khandagiri is not None
    assert khandagiri.id == "khandagiri"
    assert nandankanan is not None
    assert nandankanan.id == "infocity"


# The value objects, exactly: each refusal says which value and why (mutation testing
# found these only checked loosely).
@pytest.mark.parametrize(
    ("lat", "lon", "reason"),
    [
        ("20.3", 85.8, "lat is not a number"),
        (20.3, None, "lon is not a number"),
        (True, 85.8, "lat is not a number"),
        (20.3, False, "lon is not a number"),
        (float("nan"), 85.8, "lat is not finite"),
        (20.3, float("inf"), "lon is not finite"),
        (90.000001, 85.8, "latitude outside -90..90"),
        (-90.000001, 85.8, "latitude outside -90..90"),
        (20.3, 180.000001, "longitude outside -180..180"),
        (20.3, -180.000001, "longitude outside -180..180"),
    ],
)
def test_a_point_refuses_what_is_not_a_place(lat: Any, lon: Any, reason: str) -> None:
    with pytest.raises(InvalidCoordinate) as caught:
        GeoPoint(lat=lat, lon=lon)
    assert caught.value.reason == reason
    assert repr((caught.value.lat, caught.value.lon)) == repr((lat, lon))
    assert str(caught.value) == f"invalid coordinate lat={lat!r} lon={lon!r}: {reason}"


@pytest.mark.parametrize(("lat", "lon"), [(90, 180), (-90, -180), (0, 0), (20, 85.5)])
def test_a_point_takes_the_edges_and_integers(lat: float, lon: float) -> None:
    point = GeoPoint(lat=lat, lon=lon)
    assert (point.lat, point.lon) == (lat, lon)
    assert GeoPoint.from_shapely(point.to_shapely()) == point
    assert (point.to_shapely().x, point.to_shapely().y) == (lon, lat)


def test_a_fix_becomes_a_location_or_says_why_not() -> None:
    when = datetime(2025, 1, 1, 10, 30, tzinfo=UTC)
    fix = location_from_fix(lat=20.3, lon=85.8, radius_m=0.0, method="gps", time=when)
    assert fix == Location(
        point=GeoPoint(lat=20.3, lon=85.8), radius_m=0.0, method="gps", time=when
    )
    assert location_from_fix(lat=20.3, lon=85.8, radius_m=None, method="cell").radius_m is None
    assert location_from_fix(lat=0.0, lon=85.8, radius_m=5, method="gps").point.lat == 0.0
    assert location_from_fix(lat=20.3, lon=0.0, radius_m=5, method="gps").point.lon == 0.0
    refused = {
        (95.0, 85.8, 5.0): "latitude outside -90..90 (lat=95.0, lon=85.8)",
        (0.0, 0.0, 5.0): "position 0,0 is a placeholder, not a fix",
        (20.3, 85.8, -1.0): "uncertainty radius -1.0 m is not a distance",
        (20.3, 85.8, float("nan")): "uncertainty radius nan m is not a distance",
        (20.3, 85.8, float("inf")): "uncertainty radius inf m is not a distance",
    }
    for (lat, lon, radius), reason in refused.items():
        with pytest.raises(InvalidLocation) as caught:
            location_from_fix(lat=lat, lon=lon, radius_m=radius, method="gps")
        assert str(caught.value) == reason


def test_travel_time_is_the_stretched_distance_at_the_speed() -> None:
    from geo.distance import distance_m, travel_time_s

    a, b = GeoPoint(lat=20.2961, lon=85.8245), GeoPoint(lat=20.35, lon=85.82)
    metres = distance_m(a, b)
    assert travel_time_s(a, b) == pytest.approx(metres * 1.4 / (30 / 3.6))
    assert travel_time_s(a, b, road_factor=1.0, speed_kmh=36.0) == pytest.approx(metres / 10)
    assert travel_time_s(a, a) == 0.0
    for bad in ({"road_factor": 0.0}, {"speed_kmh": 0.0}, {"road_factor": -1.0}):
        with pytest.raises(ValueError, match="must be positive"):
            travel_time_s(a, b, **bad)


def test_great_circle_distance_against_known_values() -> None:
    """A degree of latitude is 111.195 km on the mean sphere (R = 6,371,008.8 m); half
    the globe is pi R; the distance is symmetric."""
    from geo.distance import distance_m

    assert distance_m(GeoPoint(lat=20, lon=85), GeoPoint(lat=21, lon=85)) == pytest.approx(
        111_195.08, abs=0.5
    )
    assert distance_m(GeoPoint(lat=0, lon=0), GeoPoint(lat=0, lon=180)) == pytest.approx(
        math.pi * 6_371_008.8
    )
    a, b = GeoPoint(lat=20.2961, lon=85.8245), GeoPoint(lat=20.10, lon=85.95)
    assert distance_m(a, b) == distance_m(b, a)


# A ring that crosses itself at (0.5, 0.5).
BOWTIE = [[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]


def _square(lon: float, lat: float, size: float = 0.01) -> dict[str, Any]:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size]]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def _feature(name: str | None, geometry: Any, **extra: Any) -> dict[str, Any]:
    props = {"name": name} if name else {}
    return {"type": "Feature", "properties": props, "geometry": geometry, **extra}


def _collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


@pytest.mark.parametrize(
    ("collection", "message"),
    [
        ({"type": "Feature"}, "zone feature <root>: expected a GeoJSON FeatureCollection"),
        (_collection(), "zone feature <root>: the collection has no features"),
        (
            _collection(_feature(None, _square(85.8, 20.3))),
            "zone feature #0 (unnamed): has no name property",
        ),
        (
            _collection(
                _feature("Capital Police Station", _square(85.8, 20.3)),
                _feature("Capital police station", _square(85.9, 20.3)),
            ),
            "zone feature #1 (Capital police station): duplicate zone id 'capital'",
        ),
        (
            _collection(_feature("A", {"type": "Point", "coordinates": [85.8, 20.3]})),
            "zone feature #0 (A): geometry is Point, not a polygon",
        ),
        (
            _collection({"type": "Feature", "properties": {"name": "A"}}),
            "zone feature #0 (A): unreadable geometry: 'geometry'",
        ),
        (
            _collection(
                _feature(
                    "Bow",
                    {
                        "type": "Polygon",
                        "coordinates": [
                            [[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
                        ],
                    },
                )
            ),
            "zone feature #0 (Bow): invalid polygon: Self-intersection[0.5 0.5]",
        ),
    ],
)
def test_zone_errors_name_the_feature_and_the_reason(
    collection: dict[str, Any], message: str
) -> None:
    with pytest.raises(ZoneError) as caught:
        zones_from_geojson(collection)
    assert str(caught.value) == message
    feature, _, reason = message.removeprefix("zone feature ").partition(": ")
    assert (caught.value.feature, caught.value.reason) == (feature, reason)


def test_zone_ids_come_from_the_feature_then_its_properties_then_its_name() -> None:
    multi = {
        "type": "MultiPolygon",
        "coordinates": [_square(85.0, 20.0)["coordinates"], _square(85.5, 20.0)["coordinates"]],
    }
    zones = zones_from_geojson(
        _collection(
            _feature("Kharavel Nagar Police Station", _square(85.8, 20.3)),
            _feature("B", _square(85.9, 20.3), id="zone-b"),
            {"type": "Feature", "properties": {"Name": "C", "id": "zone-c"}, "geometry": multi},
            _feature("D", _square(86.0, 20.3), id="zone-d"),
        )
    )
    assert [(z.id, z.name) for z in zones] == [
        ("kharavel-nagar", "Kharavel Nagar Police Station"),
        ("zone-b", "B"),
        ("zone-c", "C"),
        ("zone-d", "D"),
    ]
    assert zones[2].contains(GeoPoint(lat=20.005, lon=85.505))


def test_zone_of_with_a_tolerance_and_zones_within_a_radius() -> None:
    """A point 500 m outside a square: no zone, the square within 600 m of tolerance,
    none within 400; the circle of 600 m overlaps it, of 400 m not; a circle of 0 m only
    the zone it is in."""
    index = ZoneIndex(zones_from_geojson(_collection(_feature("S", _square(85.8, 20.3)))))
    outside = GeoPoint(lat=20.3 - 500 / 111_195.08, lon=85.805)
    assert index.zone_of(outside) is None
    assert index.zone_of(outside, tolerance_m=400) is None
    found = index.zone_of(outside, tolerance_m=600)
    assert found is not None
    assert found.id == "s"
    assert index.distance_to(found, outside) == pytest.approx(500, abs=1)
    assert [z.id for z in index.zones_within(outside, 600)] == ["s"]
    assert index.zones_within(outside, 400) == []
    inside = GeoPoint(lat=20.305, lon=85.805)
    assert [z.id for z in index.zones_within(inside, 0)] == ["s"]
    assert index.zone_of(GeoPoint(lat=85.805, lon=20.305)) is None
    swapped = index.swapped(GeoPoint(lat=85.805, lon=20.305))
    assert swapped is not None
    assert swapped.id == "s"


def test_zone_lookups_by_id_name_and_a_circle_east_of_a_zone() -> None:
    """An unknown id has no zone and no neighbours; a slug drops "Police Station" and
    any punctuation at either end; a circle reaching a zone from the east finds it (the
    box cut is wide enough in longitude at 20 degrees north)."""
    index = ZoneIndex(zones_from_geojson(_collection(_feature("S", _square(85.8, 20.3)))))
    s = index.get("s")
    assert s is not None
    assert s.name == "S"
    assert index.get("elsewhere") is None
    assert index.neighbours("elsewhere") == ()
    assert index.neighbours("s") == ()
    assert slugify("(Capital) Police Station ") == "capital"
    assert slugify("Kharavel Nagar police station") == "kharavel-nagar"
    east = GeoPoint(lat=20.305, lon=85.81 + 0.0048)  # about 500 m east of the square
    gap = index.distance_to(s, east)
    assert 490 < gap < 510
    assert [z.id for z in index.zones_within(east, gap + 5)] == ["s"]
    assert index.zones_within(east, gap - 5) == []


def test_travel_time_takes_any_positive_speed() -> None:
    from geo.distance import travel_time_s

    a, b = GeoPoint(lat=20.2961, lon=85.8245), GeoPoint(lat=20.35, lon=85.82)
    assert travel_time_s(a, b, speed_kmh=0.5) == pytest.approx(travel_time_s(a, b) * 60)
    with pytest.raises(ValueError, match=r"^road_factor and speed_kmh must be positive$"):
        travel_time_s(a, b, speed_kmh=-3)


def test_closest_idle_uses_the_models_road_factor_and_breaks_ties_by_id() -> None:
    """Two units on the same spot tie on time: the lower id goes first, on every
    instance. The driving time is the model's (road factor 2, 36 km/h: 10 m/s straight
    line at half speed), tiers aside."""
    from geo.distance import distance_m

    here = GeoPoint(lat=20.3, lon=85.8)
    there = GeoPoint(lat=20.31, lon=85.8)
    need = Need(here, "z", frozenset(), "police")
    units = [UnitSnapshot(u, "police", "z", there) for u in ("u-b", "u-a", "u-c")]
    model = TravelModel(road_factor=2.0, speed_kmh=36.0)
    ranked = closest_idle(need, units, model)
    assert [c.unit_id for c in ranked] == ["u-a", "u-b", "u-c"]
    assert ranked[0].travel_time_s == pytest.approx(distance_m(here, there) * 2.0 / 10.0)
    assert ranked[0].distance_m == pytest.approx(distance_m(here, there))

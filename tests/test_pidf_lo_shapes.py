"""PIDF-LO shapes at their edges, read against RFC 5491 section 5.2 (GeoShape).

A polygon (5.2.2) is an area bounded by its ring: vertices on one line bound none, so
the shape gives no centre and is dropped with a warning; the rest of the document is
still read and the call still becomes a report. An ellipse (5.2.4) has a semi-major
axis at least as long as its semi-minor one; an encoder that swapped them is read with
the longer axis, and the warning names the axis actually used.
"""

from __future__ import annotations

import math

import pytest

from gateways.telecom.adapter import to_report
from gateways.telecom.pidf_lo import parse_pidf_lo
from gateways.telecom.schema import TelecomCall
from geo.distance import distance_m
from geo.points import GeoPoint
from tests.test_pidf_lo import _presence

EPSG_4326 = "urn:ogc:def:crs:EPSG::4326"
METRE = "urn:ogc:def:uom:EPSG::9001"
DEGREE = "urn:ogc:def:uom:EPSG::9102"
FLAT = "the ring encloses no area (its vertices lie on one line); location dropped"


def _polygon(pos_list: str) -> str:
    return (
        f'<gml:Polygon srsName="{EPSG_4326}"><gml:exterior><gml:LinearRing>'
        f"<gml:posList>{pos_list}</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"
    )


# Three vertices along a diagonal in Bhubaneswar: in floating point their "area" is about
# 1e-17 square degrees, not 0, which is how such a ring used to pass as a polygon.
DIAGONAL = _polygon("20.29 85.82 20.30 85.83 20.31 85.84 20.29 85.82")
POINT = f'<gml:Point srsName="{EPSG_4326}"><gml:pos>20.2961 85.8245</gml:pos></gml:Point>'


def test_a_flat_polygon_is_dropped_and_a_point_beside_it_is_the_location() -> None:
    """Kept as a polygon, the flat ring (1.5 km "uncertainty") would beat the point,
    whose uncertainty is unknown; dropped, the point is all that is left."""
    result = parse_pidf_lo(_presence(DIAGONAL + POINT))
    assert result.shape == "Point"
    assert result.location is not None
    assert (result.location.point.lat, result.location.point.lon) == (20.2961, 85.8245)
    assert result.location.radius_m is None
    assert result.warnings == [f"gml:Polygon: {FLAT}"]


def test_a_call_whose_only_shape_is_a_flat_polygon_is_still_a_report() -> None:
    call = TelecomCall(call_id="flat-1", caller="+919437000000", pidf_lo=_presence(DIAGONAL))
    report = to_report(call, gateway_id="tsp-test")
    assert report.location is None
    assert report.external_id == "flat-1"
    assert report.warnings == (
        f"pidf_lo: gml:Polygon: {FLAT}",
        "pidf_lo: no usable location in the document",
    )


def test_a_thin_polygon_is_still_an_area() -> None:
    """A strip 1 m wide and 11 km long (a road, a rail line) is a polygon, not a line:
    its centre is the middle of the strip and its radius reaches the far corners."""
    south = "20.29 85.82 20.29 85.8200095"
    north = "20.39 85.8200095 20.39 85.82"
    result = parse_pidf_lo(_presence(_polygon(f"{south} {north} 20.29 85.82")))
    location = result.location
    assert result.warnings == []
    assert location is not None
    assert location.radius_m is not None
    assert location.point.lat == pytest.approx(20.34, abs=1e-9)
    assert location.point.lon == pytest.approx(85.82000475, abs=1e-9)
    # The parser's distances are geo.distance's (a sphere), as for every shape.
    corner = distance_m(GeoPoint(lat=20.34, lon=85.82000475), GeoPoint(lat=20.29, lon=85.82))
    assert location.radius_m == pytest.approx(corner, rel=1e-6)
    assert 5550 < location.radius_m < 5570


def _ellipse(tag: str, major: str | None, minor: str | None) -> str:
    axes = "".join(
        f'<gs:{name} uom="{METRE}">{value}</gs:{name}>'
        for name, value in (("semiMajorAxis", major), ("semiMinorAxis", minor))
        if value is not None
    )
    return (
        f'<gs:{tag} srsName="{EPSG_4326}"><gml:pos>19.8135 85.8312</gml:pos>{axes}'
        f'<gs:orientation uom="{DEGREE}">43.2</gs:orientation></gs:{tag}>'
    )


@pytest.mark.parametrize(
    ("tag", "major", "minor", "radius", "warning"),
    [
        ("Ellipse", "1200", "400", 1200, "used as a circle of its semi-major axis (1200 m)"),
        # Equal axes are a circle: the semi-major axis, no complaint.
        ("Ellipse", "500", "500", 500, "used as a circle of its semi-major axis (500 m)"),
        ("Ellipse", "700", None, 700, "used as a circle of its semi-major axis (700 m)"),
        (
            "Ellipse",
            "400",
            "1200",
            1200,
            "gs:semiMinorAxis (1200 m) is longer than gs:semiMajorAxis (400 m);"
            " used as a circle of its semi-minor axis (1200 m)",
        ),
        (
            "Ellipse",
            "400",
            "400.5",
            400.5,
            "gs:semiMinorAxis (400.5 m) is longer than gs:semiMajorAxis (400 m);"
            " used as a circle of its semi-minor axis (400.5 m)",
        ),
        (
            "Ellipsoid",
            "300",
            "900",
            900,
            "gs:semiMinorAxis (900 m) is longer than gs:semiMajorAxis (300 m);"
            " used as a circle of its semi-minor axis (900 m)",
        ),
    ],
)
def test_an_ellipse_is_the_circle_of_its_longer_axis_and_says_which(
    tag: str, major: str, minor: str | None, radius: float, warning: str
) -> None:
    result = parse_pidf_lo(_presence(_ellipse(tag, major, minor)))
    assert result.location is not None
    assert result.location.radius_m == radius
    assert result.shape == tag
    assert result.warnings == [f"gs:{tag}: {warning} around its centre"]


# How shapes are written (RFC 5491 section 5.2, GML 3.1.1): a ring as one gml:posList or
# a series of gml:pos; EPSG::4326 (2-D) or EPSG::4979 (3-D, altitude ignored); lengths
# in metres (EPSG::9001). Each case: the circle it gives, or none, and the exact notes.
SQUARE = ["20.29 85.82", "20.29 85.83", "20.30 85.83", "20.30 85.82", "20.29 85.82"]
TRIANGLE = "20.29 85.82 20.29 85.83 20.30 85.83 20.29 85.82"
TRIANGLE_3D = "20.29 85.82 5 20.29 85.83 5 20.30 85.83 5 20.29 85.82 5"
# A triangle's centroid is the mean of its vertices.
TRIANGLE_CENTRE = (20.29 + 20.29 + 20.30) / 3, (85.82 + 85.83 + 85.83) / 3
EPSG_4979 = "urn:ogc:def:crs:EPSG::4979"


def _ring(inner: str, srs: str | None = EPSG_4326) -> str:
    name = f' srsName="{srs}"' if srs is not None else ""
    return (
        f"<gml:Polygon{name}><gml:exterior><gml:LinearRing>{inner}</gml:LinearRing>"
        "</gml:exterior></gml:Polygon>"
    )


def _prism(base: str, srs: str | None = EPSG_4979) -> str:
    name = f' srsName="{srs}"' if srs is not None else ""
    return (
        f'<gs:Prism{name}><gs:base>{base}</gs:base><gs:height uom="{METRE}">3</gs:height>'
        "</gs:Prism>"
    )


def _circle_of(radius: str, *, uom: str | None = METRE, pos: str = "20.29 85.82") -> str:
    unit = f' uom="{uom}"' if uom is not None else ""
    return (
        f'<gs:Circle srsName="{EPSG_4326}"><gml:pos>{pos}</gml:pos>'
        f"<gs:radius{unit}>{radius}</gs:radius></gs:Circle>"
    )


NO_SRS = "no srsName; read as EPSG::4326 (latitude first), which RFC 5491 requires"
DROPPED = "no usable location in the document"


def _triangle_radius() -> float:
    """To the farthest vertex: 20.30 85.83 (a degree of latitude is longer than one of
    longitude at 20 degrees north)."""
    centre = GeoPoint(lat=TRIANGLE_CENTRE[0], lon=TRIANGLE_CENTRE[1])
    return distance_m(centre, GeoPoint(lat=20.30, lon=85.83))


@pytest.mark.parametrize(
    ("shape", "centre", "radius", "warnings"),
    [
        pytest.param(
            _ring("".join(f"<gml:pos>{p}</gml:pos>" for p in SQUARE)),
            (20.295, 85.825),
            distance_m(GeoPoint(lat=20.295, lon=85.825), GeoPoint(lat=20.29, lon=85.82)),
            [],
            id="ring-as-pos-series",
        ),
        pytest.param(
            _ring(f"<gml:posList>{TRIANGLE}</gml:posList><gml:pos>20.29 85.82</gml:pos>"),
            None,
            None,
            [
                "gml:Polygon: the ring needs one gml:posList or a series of gml:pos;"
                " location dropped",
                DROPPED,
            ],
            id="ring-with-both",
        ),
        pytest.param(
            _ring(f"<gml:posList>{TRIANGLE}</gml:posList><gml:posList>{TRIANGLE}</gml:posList>"),
            None,
            None,
            [
                "gml:Polygon: the ring needs one gml:posList or a series of gml:pos;"
                " location dropped",
                DROPPED,
            ],
            id="ring-with-two-poslists",
        ),
        pytest.param(
            _ring(f"<gml:posList>{TRIANGLE}</gml:posList>", None),
            TRIANGLE_CENTRE,
            _triangle_radius(),
            [f"gml:Polygon: {NO_SRS}"],
            id="polygon-without-srs",
        ),
        pytest.param(
            _ring(f"<gml:posList>{TRIANGLE_3D}</gml:posList>", EPSG_4979),
            TRIANGLE_CENTRE,
            _triangle_radius(),
            [],
            id="polygon-4979-is-3d",
        ),
        pytest.param(
            _ring(f"<gml:posList>{TRIANGLE}</gml:posList>", " urn:ogc:def:crs:EPSG:6.6:4326 "),
            TRIANGLE_CENTRE,
            _triangle_radius(),
            [],
            id="crs-with-version-and-spaces",
        ),
        pytest.param(
            _ring(f'<gml:posList srsDimension=" 2 ">{TRIANGLE}</gml:posList>'),
            TRIANGLE_CENTRE,
            _triangle_radius(),
            [],
            id="srs-dimension-with-spaces",
        ),
        pytest.param(
            _ring("<gml:posList>20.29 85.82 20.29 1e400 20.30 85.83 20.29 85.82</gml:posList>"),
            None,
            None,
            ["gml:Polygon: gml:posList has a number out of range; location dropped", DROPPED],
            id="number-out-of-range",
        ),
        pytest.param(
            _prism(_ring(f"<gml:posList>{TRIANGLE_3D}</gml:posList>", None)),
            TRIANGLE_CENTRE,
            _triangle_radius(),
            [],
            id="prism-base-takes-the-prisms-crs",
        ),
        pytest.param(
            _prism(_ring(f"<gml:posList>{TRIANGLE}</gml:posList>")),
            TRIANGLE_CENTRE,
            _triangle_radius(),
            [],
            id="prism-base-keeps-its-own-crs",
        ),
        pytest.param(
            _prism(_ring(f"<gml:posList>{TRIANGLE}</gml:posList>", None), None),
            TRIANGLE_CENTRE,
            _triangle_radius(),
            [f"gml:Polygon: {NO_SRS}"],
            id="prism-without-crs",
        ),
        pytest.param(
            _circle_of("40", uom=None),
            (20.29, 85.82),
            40.0,
            ["gs:radius: no uom; read as metres"],
            id="radius-without-uom",
        ),
        pytest.param(_circle_of("0"), (20.29, 85.82), 0.0, [], id="radius-zero"),
        pytest.param(
            _circle_of("20040000"), (20.29, 85.82), 20_040_000.0, [], id="radius-half-the-earth"
        ),
        pytest.param(
            _circle_of("20040001"),
            None,
            None,
            [
                "gs:Circle: gs:radius 2.004e+07 m is not a plausible distance; location dropped",
                DROPPED,
            ],
            id="radius-beyond-half-the-earth",
        ),
        pytest.param(
            _circle_of("40 50"),
            None,
            None,
            ["gs:Circle: gs:radius '40 50' is not one number; location dropped", DROPPED],
            id="radius-two-numbers",
        ),
        pytest.param(
            _circle_of(f'40</gs:radius><gs:radius uom="{METRE}">50'),
            None,
            None,
            ["gs:Circle: 2 gs:radius elements; location dropped", DROPPED],
            id="two-radii",
        ),
        pytest.param(
            _circle_of("40", pos="20.29 85.82 3"), (20.29, 85.82), 40.0, [], id="pos-with-altitude"
        ),
        pytest.param(
            _circle_of("40", pos="20.29 85.82 3 4"),
            None,
            None,
            [
                "gs:Circle: gml:pos has 4 numbers, not latitude longitude; location dropped",
                DROPPED,
            ],
            id="pos-with-four-numbers",
        ),
    ],
)
def test_how_a_shape_is_written(
    shape: str,
    centre: tuple[float, float] | None,
    radius: float | None,
    warnings: list[str],
) -> None:
    result = parse_pidf_lo(_presence(shape))
    assert result.warnings == warnings
    if centre is None:
        assert result.location is None
        return
    location = result.location
    assert location is not None
    assert location.point.lat == pytest.approx(centre[0], abs=1e-9)
    assert location.point.lon == pytest.approx(centre[1], abs=1e-9)
    assert location.radius_m == pytest.approx(radius, rel=1e-9)


def test_a_ring_of_more_than_1000_vertices_is_refused() -> None:
    """RFC 5491 recommends at most 15; 1000 bounds the work one document can cause."""

    def ring(count: int) -> str:
        # A circle of `count` vertices about 1 km around Bhubaneswar, closed.
        points = [
            f"{20.2961 + 0.009 * math.sin(2 * math.pi * i / count):.7f}"
            f" {85.8245 + 0.009 * math.cos(2 * math.pi * i / count):.7f}"
            for i in range(count)
        ]
        return _ring(f"<gml:posList>{' '.join([*points, points[0]])}</gml:posList>")

    assert parse_pidf_lo(_presence(ring(999))).shape == "Polygon"
    result = parse_pidf_lo(_presence(ring(1000)))
    assert result.location is None
    assert result.warnings == [
        "gml:Polygon: 1001 vertices is over the limit of 1000; location dropped",
        DROPPED,
    ]


# Shapes written without srsName or uom: RFC 5491 mandates EPSG::4326 and metres (and
# degrees for angles), so they are read that way, each with a note saying so.
BARE = "no srsName; read as EPSG::4326 (latitude first), which RFC 5491 requires"


@pytest.mark.parametrize(
    ("shape", "warnings"),
    [
        pytest.param(
            "<gml:Point><gml:pos>20.29 85.82</gml:pos></gml:Point>",
            [f"gml:Point: {BARE}"],
            id="point",
        ),
        pytest.param(
            "<gs:Circle><gml:pos>20.29 85.82</gml:pos><gs:radius>40</gs:radius></gs:Circle>",
            [f"gs:Circle: {BARE}", "gs:radius: no uom; read as metres"],
            id="circle",
        ),
        pytest.param(
            "<gs:Ellipse><gml:pos>20.29 85.82</gml:pos><gs:semiMajorAxis>400</gs:semiMajorAxis>"
            "<gs:semiMinorAxis>100</gs:semiMinorAxis></gs:Ellipse>",
            [
                f"gs:Ellipse: {BARE}",
                "gs:semiMajorAxis: no uom; read as metres",
                "gs:semiMinorAxis: no uom; read as metres",
                "gs:Ellipse: used as a circle of its semi-major axis (400 m) around its centre",
            ],
            id="ellipse",
        ),
        pytest.param(
            "<gs:ArcBand><gml:pos>20.29 85.82</gml:pos><gs:innerRadius>100</gs:innerRadius>"
            "<gs:outerRadius>500</gs:outerRadius><gs:startAngle>10</gs:startAngle>"
            "<gs:openingAngle>30</gs:openingAngle></gs:ArcBand>",
            [
                f"gs:ArcBand: {BARE}",
                "gs:innerRadius: no uom; read as metres",
                "gs:outerRadius: no uom; read as metres",
                "gs:startAngle: no uom; read as degrees",
                "gs:openingAngle: no uom; read as degrees",
            ],
            id="arc-band",
        ),
    ],
)
def test_a_shape_without_units_is_read_in_rfc_5491s_and_says_so(
    shape: str, warnings: list[str]
) -> None:
    result = parse_pidf_lo(_presence(shape))
    assert result.location is not None
    assert (result.location.point.lat, result.location.point.lon) != (0.0, 0.0)
    assert result.warnings == warnings


def test_an_ellipse_without_a_semi_minor_axis_is_its_semi_major_one() -> None:
    """Even a semi-major axis under a metre: a missing axis is not a 1 m one."""
    shape = (
        f'<gs:Ellipse srsName="{EPSG_4326}"><gml:pos>20.29 85.82</gml:pos>'
        f'<gs:semiMajorAxis uom="{METRE}">0.5</gs:semiMajorAxis></gs:Ellipse>'
    )
    result = parse_pidf_lo(_presence(shape))
    assert result.location is not None
    assert result.location.radius_m == 0.5
    assert result.warnings == [
        "gs:Ellipse: used as a circle of its semi-major axis (0.5 m) around its centre"
    ]


def _arc_band(inner: str, outer: str, start: str, opening: str) -> str:
    angle = 'uom="urn:ogc:def:uom:EPSG::9102"'
    return (
        f'<gs:ArcBand srsName="{EPSG_4326}"><gml:pos>20.29 85.82</gml:pos>'
        f'<gs:innerRadius uom="{METRE}">{inner}</gs:innerRadius>'
        f'<gs:outerRadius uom="{METRE}">{outer}</gs:outerRadius>'
        f"<gs:startAngle {angle}>{start}</gs:startAngle>"
        f"<gs:openingAngle {angle}>{opening}</gs:openingAngle></gs:ArcBand>"
    )


@pytest.mark.parametrize(
    ("inner", "outer", "start", "opening", "error"),
    [
        ("100", "500", "10", "0.5", None),
        ("100", "500", "10", "360", None),
        ("0", "500", "10", "30", None),
        ("500", "500", "10", "30", "gs:innerRadius 500 m is not less than gs:outerRadius"),
        ("100", "500", "10", "0", "gs:openingAngle 0 degrees is not in 0..360"),
        ("100", "500", "10", "360.5", "gs:openingAngle 360.5 degrees is not in 0..360"),
        ("100", "500", "10 20", "30", "gs:startAngle '10 20' is not one number"),
    ],
)
def test_an_arc_band_is_a_sector_of_some_width_and_angle(
    inner: str, outer: str, start: str, opening: str, error: str | None
) -> None:
    """RFC 5491 5.2.7: the inner radius is less than the outer; the opening angle is
    more than 0 and at most 360 degrees."""
    result = parse_pidf_lo(_presence(_arc_band(inner, outer, start, opening)))
    if error is None:
        assert result.location is not None
        assert result.location.radius_m is not None
        # Never more than the outer radius, but for the sampling's margin and the
        # difference between the geodesic and geo.distance's sphere (under 1 %).
        assert result.location.radius_m <= float(outer) * 1.01
        assert result.warnings == []
        return
    assert result.location is None
    assert result.warnings == [f"gs:ArcBand: {error}; location dropped", DROPPED]


@pytest.mark.parametrize(
    ("positions", "error"),
    [
        (["20.29 85.82", "20.29 x", "20.30 85.83"], "gml:pos '20.29 x': 'x' is not a number"),
        (["20.29 85.82", "95 85.83", "20.30 85.83"], "gml:LinearRing 95 85.83: latitude outside"),
        (
            ["20.29 85.82", "20.29", "20.30 85.83"],
            "gml:LinearRing has 1 numbers, not latitude longitude",
        ),
    ],
)
def test_a_bad_vertex_in_a_series_of_gml_pos_is_named(positions: list[str], error: str) -> None:
    inner = "".join(f"<gml:pos>{p}</gml:pos>" for p in [*positions, positions[0]])
    result = parse_pidf_lo(_presence(_ring(inner)))
    assert result.location is None
    assert result.warnings[0].startswith(f"gml:Polygon: {error}")
    assert result.warnings[0].endswith("; location dropped")


def test_a_ring_that_crosses_itself_is_its_hull() -> None:
    """A bow tie: RFC 5491 forbids crossing edges, but the area it covers is still
    the caller's; the hull of the square's corners has the square's centre."""
    bow_tie = "20.29 85.82 20.30 85.83 20.29 85.83 20.30 85.82 20.29 85.82"
    result = parse_pidf_lo(_presence(_ring(f"<gml:posList>{bow_tie}</gml:posList>")))
    assert result.location is not None
    assert result.location.point.lat == pytest.approx(20.295, abs=1e-9)
    assert result.location.point.lon == pytest.approx(85.825, abs=1e-9)
    assert result.warnings == ["gml:Polygon: the ring crosses itself; used the centre of its hull"]


def test_a_building_sized_polygon_is_kept() -> None:
    """A triangle some 30 m across (a house): small, but an area, not a line."""
    house = "20.2961 85.8245 20.2961 85.8248 20.2963 85.8248 20.2961 85.8245"
    result = parse_pidf_lo(_presence(_ring(f"<gml:posList>{house}</gml:posList>")))
    assert result.location is not None
    assert result.location.point.lat == pytest.approx((20.2961 * 2 + 20.2963) / 3, abs=1e-9)
    assert result.location.radius_m is not None
    assert 15 < result.location.radius_m < 30
    assert result.warnings == []


def test_a_circle_of_zero_metres_is_the_most_certain() -> None:
    half = _circle_of("0.5")
    zero = _circle_of("0", pos="20.2901 85.82")
    result = parse_pidf_lo(_presence(half + zero))
    assert result.location is not None
    assert (result.location.point.lat, result.location.radius_m) == (20.2901, 0.0)

"""How PIDF-LO shapes are written, read against RFC 5491 section 5.2 and GML 3.1.1.

A ring as one gml:posList or a series of gml:pos; EPSG::4326 (2-D) or EPSG::4979 (3-D,
altitude ignored); lengths in metres (EPSG::9001). Each case: the circle it gives, or none,
and the exact notes.
"""

from __future__ import annotations

import pytest

from gateways.telecom.pidf_lo import parse_pidf_lo
from geo.distance import distance_m
from geo.points import GeoPoint
from tests.pidf_lo_shapes_helpers import DROPPED, METRE, _circle_of, _ring
from tests.test_pidf_lo import _presence

SQUARE = ["20.29 85.82", "20.29 85.83", "20.30 85.83", "20.30 85.82", "20.29 85.82"]
TRIANGLE = "20.29 85.82 20.29 85.83 20.30 85.83 20.29 85.82"
TRIANGLE_3D = "20.29 85.82 5 20.29 85.83 5 20.30 85.83 5 20.29 85.82 5"
# A triangle's centroid is the mean of its vertices.
TRIANGLE_CENTRE = (20.29 + 20.29 + 20.30) / 3, (85.82 + 85.83 + 85.83) / 3
EPSG_4979 = "urn:ogc:def:crs:EPSG::4979"


def _prism(base: str, srs: str | None = EPSG_4979) -> str:
    name = f' srsName="{srs}"' if srs is not None else ""
    return (
        f'<gs:Prism{name}><gs:base>{base}</gs:base><gs:height uom="{METRE}">3</gs:height>'
        "</gs:Prism>"
    )


NO_SRS = "no srsName; read as EPSG::4326 (latitude first), which RFC 5491 requires"


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

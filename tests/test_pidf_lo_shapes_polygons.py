"""PIDF-LO polygons at their edges, read against RFC 5491 section 5.2.2.

A polygon is an area bounded by its ring: vertices on one line bound none, so the shape
gives no centre and is dropped with a warning; the rest of the document is still read and
the call still becomes a report. A ring too long, with a bad vertex or crossing itself is
named in the warnings.
"""

from __future__ import annotations

import math

import pytest

from gateways.telecom.adapter import to_report
from gateways.telecom.pidf_lo import parse_pidf_lo
from gateways.telecom.schema import TelecomCall
from geo.distance import distance_m
from geo.points import GeoPoint
from tests.pidf_lo_shapes_helpers import DROPPED, EPSG_4326, _ring
from tests.test_pidf_lo import _presence

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

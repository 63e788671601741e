"""PIDF-LO shapes at their edges, read against RFC 5491 section 5.2 (GeoShape).

A polygon (5.2.2) is an area bounded by its ring: vertices on one line bound none, so
the shape gives no centre and is dropped with a warning; the rest of the document is
still read and the call still becomes a report. An ellipse (5.2.4) has a semi-major
axis at least as long as its semi-minor one; an encoder that swapped them is read with
the longer axis, and the warning names the axis actually used.
"""

from __future__ import annotations

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

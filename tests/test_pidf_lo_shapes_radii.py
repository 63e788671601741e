"""PIDF-LO shapes given by radii or axes (circle, ellipse, arc band), read against RFC 5491 5.2.

An ellipse (5.2.4) has a semi-major axis at least as long as its semi-minor one; an encoder
that swapped them is read with the longer axis, and the warning names the axis actually used.
"""

from __future__ import annotations

import pytest

from gateways.telecom.pidf_lo import parse_pidf_lo
from tests.pidf_lo_shapes_helpers import DROPPED, EPSG_4326, METRE, _circle_of
from tests.test_pidf_lo import _presence

DEGREE = "urn:ogc:def:uom:EPSG::9102"


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


def test_a_circle_of_zero_metres_is_the_most_certain() -> None:
    half = _circle_of("0.5")
    zero = _circle_of("0", pos="20.2901 85.82")
    result = parse_pidf_lo(_presence(half + zero))
    assert result.location is not None
    assert (result.location.point.lat, result.location.radius_m) == (20.2901, 0.0)

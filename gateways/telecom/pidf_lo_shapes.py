"""GML and GeoShape shapes (RFC 5491) as a centre and a radius of uncertainty.

Each reader takes a shape element and gives (centre, radius in metres or None), adding
notes for what it approximated; a shape it cannot read raises ShapeError naming why.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from geopy.distance import geodesic
from shapely.geometry import Polygon as ShapelyPolygon

from gateways.telecom.pidf_lo_xml import (
    GEOSHAPE,
    GML,
    NUMBER,
    PREFIXES,
    prefixed,
    text_of,
)
from geo.distance import distance_m
from geo.points import GeoPoint, InvalidCoordinate

if TYPE_CHECKING:
    from collections.abc import Callable
    from xml.etree.ElementTree import Element

# These bound the work one request can cause (parsing runs in the event loop: 1,000
# geodesic distances take about 80 ms). 3GPP polygons have at most 15 points (TS 23.032).
_MAX_VERTICES = 1_000
# Half the Earth's circumference: no uncertainty can be larger.
_MAX_LENGTH_M = 20_040_000.0
# A hull smaller than this share of its extent's square is a line: a strip 1 mm wide
# and 10 km long is 1e-7 of it, rounding noise 1e-13.
_FLAT = 1e-9

_CRS = re.compile(r"urn:ogc:def:crs:EPSG:[0-9.]*:(4326|4979)")
_METRE = re.compile(r"urn:ogc:def:uom:EPSG:[0-9.]*:9001")
_DEGREE = re.compile(r"urn:ogc:def:uom:EPSG:[0-9.]*:9102")
_RADIAN = re.compile(r"urn:ogc:def:uom:EPSG:[0-9.]*:9101")


class ShapeError(Exception):
    """Internal: one shape cannot be read; the message says which element and why."""


def _read_point(element: Element, notes: list[str]) -> tuple[GeoPoint, float | None]:
    return _pos(element, notes), None


def _read_circle(element: Element, notes: list[str]) -> tuple[GeoPoint, float | None]:
    return _pos(element, notes), _length(element, "radius", notes)


def _read_ellipse(element: Element, notes: list[str]) -> tuple[GeoPoint, float | None]:
    centre = _pos(element, notes)
    major = _length(element, "semiMajorAxis", notes)
    minor = _length(element, "semiMinorAxis", notes, required=False)
    # The smallest circle around an ellipse has its longer semi-axis as radius. An
    # encoder that swapped the two axes gives a semi-minor axis longer than the
    # semi-major one (RFC 5491 says it is not): the longer one still holds the ellipse,
    # and the note names the axis actually used.
    if minor > major:
        notes.append(
            f"{prefixed(element.tag)}: gs:semiMinorAxis ({minor:g} m) is longer than"
            f" gs:semiMajorAxis ({major:g} m); used as a circle of its semi-minor axis"
            f" ({minor:g} m) around its centre"
        )
        return centre, minor
    notes.append(
        f"{prefixed(element.tag)}: used as a circle of its semi-major axis ({major:g} m)"
        " around its centre"
    )
    return centre, major


def _read_arc_band(element: Element, notes: list[str]) -> tuple[GeoPoint, float | None]:
    antenna = _pos(element, notes)
    inner = _length(element, "innerRadius", notes)
    outer = _length(element, "outerRadius", notes)
    start = _angle(element, "startAngle", notes)
    opening = _angle(element, "openingAngle", notes)
    if not inner < outer:
        raise ShapeError(f"gs:innerRadius {inner:g} m is not less than gs:outerRadius")
    if not 0 < opening <= 360:
        raise ShapeError(f"gs:openingAngle {opening:g} degrees is not in 0..360")
    # Arcs sampled at most 4 degrees apart; the sagitta below covers what lies between.
    steps = max(4, math.ceil(opening / 4))
    # Bearings are clockwise from north, as RFC 5491 defines the arc band's angles.
    bearings = [start + opening * i / steps for i in range(steps + 1)]
    rim = [_destination(antenna, outer, b) for b in bearings]
    hub = [_destination(antenna, inner, b) for b in reversed(bearings)] if inner else [antenna]
    centre, radius = _enclosing_circle(rim + hub, notes, name=None)
    # Between two samples the true arc bulges out by at most this much.
    sagitta = outer * (1 - math.cos(math.radians(opening / steps / 2)))
    return centre, radius + sagitta


def _read_polygon(element: Element, notes: list[str]) -> tuple[GeoPoint, float | None]:
    dims = _dimensions(element, notes)
    ring = element.find(f"{{{GML}}}exterior/{{{GML}}}LinearRing")
    if ring is None:
        raise ShapeError("no gml:exterior/gml:LinearRing")
    pos_lists = ring.findall(f"{{{GML}}}posList")
    poses = ring.findall(f"{{{GML}}}pos")
    if len(pos_lists) == 1 and not poses:
        dims = _int_attribute(pos_lists[0], "srsDimension", dims)
        numbers = _numbers(pos_lists[0], "gml:posList")
        if dims not in (2, 3) or len(numbers) % dims:
            raise ShapeError(f"gml:posList has {len(numbers)} numbers, not {dims}-D positions")
        tuples = [numbers[i : i + dims] for i in range(0, len(numbers), dims)]
    elif poses and not pos_lists:
        tuples = [_numbers(p, "gml:pos") for p in poses]
    else:
        raise ShapeError("the ring needs one gml:posList or a series of gml:pos")
    if len(tuples) > _MAX_VERTICES:
        raise ShapeError(f"{len(tuples)} vertices is over the limit of {_MAX_VERTICES}")
    vertices = [_point(t, "gml:LinearRing") for t in tuples]
    if vertices and vertices[0] != vertices[-1]:
        notes.append("gml:LinearRing: ring not closed (first vertex is not the last); closed it")
    elif vertices:
        vertices.pop()
    if len(set(vertices)) < 3:
        raise ShapeError("the ring has fewer than 3 distinct vertices")
    return _enclosing_circle(vertices, notes, name="gml:Polygon")


def _read_prism(element: Element, notes: list[str]) -> tuple[GeoPoint, float | None]:
    base = element.find(f"{{{GEOSHAPE}}}base/{{{GML}}}Polygon")
    if base is None:
        raise ShapeError("no gs:base/gml:Polygon")
    # The prism names its CRS; the base polygon inherits it (the tree is ours to edit).
    if base.get("srsName") is None and element.get("srsName") is not None:
        base.set("srsName", element.get("srsName", ""))
    return _read_polygon(base, notes)


# Each shape reader returns (centre, radius in metres or None) and may add notes.
SHAPES: dict[str, Callable[[Element, list[str]], tuple[GeoPoint, float | None]]] = {
    f"{{{GML}}}Point": _read_point,
    f"{{{GEOSHAPE}}}Circle": _read_circle,
    f"{{{GEOSHAPE}}}Sphere": _read_circle,
    f"{{{GEOSHAPE}}}Ellipse": _read_ellipse,
    f"{{{GEOSHAPE}}}Ellipsoid": _read_ellipse,
    f"{{{GEOSHAPE}}}ArcBand": _read_arc_band,
    f"{{{GML}}}Polygon": _read_polygon,
    f"{{{GEOSHAPE}}}Prism": _read_prism,
}


def _enclosing_circle(
    vertices: list[GeoPoint], notes: list[str], *, name: str | None
) -> tuple[GeoPoint, float]:
    """Centroid and the distance to the farthest vertex: a circle holding every vertex.

    Computed in plain lon/lat, which is close enough for shapes a few kilometres wide.
    A disc holding all vertices holds their convex hull, so the radius is right even
    when the ring is not a simple polygon; only the centre then comes from the hull.
    """
    polygon = ShapelyPolygon([(v.lon, v.lat) for v in vertices])
    hull = polygon.convex_hull
    min_lon, min_lat, max_lon, max_lat = polygon.bounds
    # Vertices on one line describe no area (RFC 5491's polygon is an area), so no
    # centre: the shape is dropped. In floating point their area is rounding noise
    # (about 1e-17 square degrees), not 0, hence the comparison with the extent.
    if hull.area <= _FLAT * max(max_lon - min_lon, max_lat - min_lat) ** 2:
        raise ShapeError("the ring encloses no area (its vertices lie on one line)")
    if polygon.is_valid:
        centroid = polygon.centroid
    else:
        if name is not None:
            notes.append(f"{name}: the ring crosses itself; used the centre of its hull")
        centroid = hull.centroid
    centre = GeoPoint.from_shapely(centroid)
    return centre, max(distance_m(centre, v) for v in vertices)


def _destination(origin: GeoPoint, metres: float, bearing: float) -> GeoPoint:
    point = geodesic(meters=metres).destination((origin.lat, origin.lon), bearing=bearing)
    return GeoPoint(lat=float(point.latitude), lon=float(point.longitude))


def _dimensions(element: Element, notes: list[str]) -> int:
    srs = element.get("srsName")
    if srs is None:
        notes.append(
            f"{prefixed(element.tag)}: no srsName; read as EPSG::4326 (latitude first),"
            " which RFC 5491 requires"
        )
        return 2
    match = _CRS.fullmatch(srs.strip())
    if match is None:
        raise ShapeError(f"srsName {srs[:80]!r} is not EPSG::4326 or EPSG::4979")
    return 3 if match.group(1) == "4979" else 2


def _pos(element: Element, notes: list[str]) -> GeoPoint:
    _dimensions(element, notes)
    return _point(_numbers(_single(element, GML, "pos"), "gml:pos"), "gml:pos")


def _point(numbers: list[float], name: str) -> GeoPoint:
    # EPSG::4326 is 2-D, but encoders often append an altitude; it is not needed here.
    if len(numbers) not in (2, 3):
        raise ShapeError(f"{name} has {len(numbers)} numbers, not latitude longitude")
    try:
        return GeoPoint(lat=numbers[0], lon=numbers[1])
    except InvalidCoordinate as err:
        raise ShapeError(f"{name} {numbers[0]:g} {numbers[1]:g}: {err.reason}") from err


def _numbers(element: Element, name: str) -> list[float]:
    words = text_of(element).split()
    bad = next((w for w in words if NUMBER.fullmatch(w) is None), None)
    if bad is not None:
        raise ShapeError(f"{name} {text_of(element)[:60]!r}: {bad[:20]!r} is not a number")
    numbers = [float(w) for w in words]
    if not all(math.isfinite(n) for n in numbers):
        raise ShapeError(f"{name} has a number out of range")
    return numbers


def _length(element: Element, local: str, notes: list[str], *, required: bool = True) -> float:
    found = element.findall(f"{{{GEOSHAPE}}}{local}")
    if not found and not required:
        return 0.0
    child = _single(element, GEOSHAPE, local)
    uom = child.get("uom")
    name = f"gs:{local}"
    if uom is None:
        notes.append(f"{name}: no uom; read as metres")
    elif _METRE.fullmatch(uom.strip()) is None:
        raise ShapeError(f"{name} unit {uom[:80]!r} is not metres (EPSG::9001)")
    value = _single_number(child, name)
    if not 0 <= value <= _MAX_LENGTH_M:
        raise ShapeError(f"{name} {value:g} m is not a plausible distance")
    return value


def _angle(element: Element, local: str, notes: list[str]) -> float:
    child = _single(element, GEOSHAPE, local)
    uom = (child.get("uom") or "").strip()
    name = f"gs:{local}"
    value = _single_number(child, name)
    if _RADIAN.fullmatch(uom):
        return math.degrees(value)
    if not uom:
        notes.append(f"{name}: no uom; read as degrees")
    elif _DEGREE.fullmatch(uom) is None:
        raise ShapeError(f"{name} unit {uom[:80]!r} is not degrees (EPSG::9102)")
    return value


def _single_number(element: Element, name: str) -> float:
    numbers = _numbers(element, name)
    if len(numbers) != 1:
        raise ShapeError(f"{name} {text_of(element)[:40]!r} is not one number")
    return numbers[0]


def _single(element: Element, namespace: str, local: str) -> Element:
    found = element.findall(f"{{{namespace}}}{local}")
    name = f"{PREFIXES.get(namespace, '')}{local}"
    if not found:
        raise ShapeError(f"{name} missing")
    # Two values for one thing: either could be the wrong one, so neither is used.
    if len(found) > 1:
        raise ShapeError(f"{len(found)} {name} elements")
    return found[0]


def _int_attribute(element: Element, attribute: str, default: int) -> int:
    value = (element.get(attribute) or "").strip()
    if not value:
        return default
    if value not in ("2", "3"):
        raise ShapeError(f"{attribute}={value[:20]!r} is not 2 or 3")
    return int(value)

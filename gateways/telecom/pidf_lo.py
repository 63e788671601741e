"""PIDF-LO location (RFC 4119, RFC 5491) from a telecom payload. Pure: no I/O.

What is read:

- a PIDF ``<presence>`` document, the same wrapped in a HELD ``<locationResponse>``
  (RFC 5985), or a French NORMAU ``postTerminalLocation`` message, which carries the
  same GeoShape geometries without the PIDF wrapper;
- every ``gp:geopriv`` anywhere under the presence (``tuple``, ``dm:device``,
  ``dm:person``, and the ``dm:tuple`` some old encoders wrote), its ``gp:method``, the
  ``timestamp`` of the element that holds it, and each ``gp:location-info``.

What each shape becomes (a Location is a point and a radius of uncertainty):

- ``gml:Point``: the point; radius unknown (``None``).
- ``gs:Circle``, ``gs:Sphere``: centre and radius.
- ``gs:Ellipse``, ``gs:Ellipsoid``: centre and the semi-major axis as radius, the
  smallest circle that holds the ellipse; a warning says so.
- ``gml:Polygon`` (and the base of ``gs:Prism``): the centroid, and as radius the
  distance (``geo.distance.distance_m``) from it to the farthest vertex.
- ``gs:ArcBand``: its sector (arcs sampled every 4 degrees) as a polygon, as above; the
  centre of an arc band is the antenna, not the caller, so it is never used as is.
- ``ca:civicAddress``: kept as text (``civic``) for geocoding later; no coordinates are
  made up from it.

Several locations: the one with the smallest radius wins, a radius-less point ranks
last, and a warning says when the others lie outside its uncertainty.

``gml:pos`` is **latitude first** for ``urn:ogc:def:crs:EPSG::4326`` and ``::4979``
(third number: altitude, ignored). Other CRS names are refused: the old
``http://www.opengis.net/gml/srs/epsg.xml#4326`` form is longitude first. A shape
with no ``srsName`` is read as EPSG::4326, which RFC 5491 mandates, with a warning.

A shape that cannot be read is dropped with a warning naming the element; a document
whose only shapes are broken gives no location, never a guessed one (nor 0,0).
`PidfLoError` is raised only for input that is not XML, is refused as unsafe (DTDs and
entities are forbidden, against entity-expansion bombs), or is not PIDF-LO.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException
from geopy.distance import geodesic
from shapely.geometry import Polygon as ShapelyPolygon

from geo.distance import distance_m
from geo.location import InvalidLocation, Location, location_from_fix
from geo.points import GeoPoint, InvalidCoordinate

if TYPE_CHECKING:
    from collections.abc import Callable
    from xml.etree.ElementTree import Element

PIDF = "urn:ietf:params:xml:ns:pidf"
GEOPRIV = "urn:ietf:params:xml:ns:pidf:geopriv10"
CIVIC = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"
DATA_MODEL = "urn:ietf:params:xml:ns:pidf:data-model"
GML = "http://www.opengis.net/gml"
GEOSHAPE = "http://www.opengis.net/pidflo/1.0"
CONFIDENCE = "urn:ietf:params:xml:ns:geopriv:conf"
HELD = "urn:ietf:params:xml:ns:geopriv:held"
NORMAU = "http://www.telecom.gouv.fr/normau/messages"

_PREFIXES = {
    PIDF: "",
    GEOPRIV: "gp:",
    CIVIC: "ca:",
    DATA_MODEL: "dm:",
    GML: "gml:",
    GEOSHAPE: "gs:",
    CONFIDENCE: "con:",
    HELD: "held:",
}

# Real PIDF-LO bodies are a few kilobytes; these bound the work one request can cause
# (parsing runs in the event loop: 1,000 geodesic distances take about 80 ms). 3GPP
# polygons have at most 15 points (TS 23.032).
MAX_DOCUMENT_CHARS = 256 * 1024
_MAX_VERTICES = 1_000
# Half the Earth's circumference: no uncertainty can be larger.
_MAX_LENGTH_M = 20_040_000.0

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_CRS = re.compile(r"urn:ogc:def:crs:EPSG:[0-9.]*:(4326|4979)")
_METRE = re.compile(r"urn:ogc:def:uom:EPSG:[0-9.]*:9001")
_DEGREE = re.compile(r"urn:ogc:def:uom:EPSG:[0-9.]*:9102")
_RADIAN = re.compile(r"urn:ogc:def:uom:EPSG:[0-9.]*:9101")
_HOLDERS = frozenset({"tuple", "device", "person"})


class PidfLoError(ValueError):
    """Input that is not PIDF-LO at all: not XML, unsafe XML, or another document."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PidfLocation:
    """What a PIDF-LO document says about where the caller is.

    ``location`` is the best usable shape as a point and radius (``None`` when there is
    none); ``shape`` names it (``"Circle"``, ...). ``civic`` is the civic address as
    ``"country: AT; A1: Wien; ..."`` text. ``method`` is the ``gp:method`` text of the
    chosen location (or of the first geopriv, without one). ``confidence`` is the
    ``con:confidence`` percentage that came with the chosen shape. ``warnings`` says
    what was dropped or approximated, naming the element.
    """

    location: Location | None
    civic: str | None
    method: str | None
    warnings: list[str]
    shape: str | None = None
    confidence: float | None = None


class _ShapeError(Exception):
    """Internal: one shape cannot be read; the message says which element and why."""


@dataclass(frozen=True, slots=True)
class _Geopriv:
    method: str | None
    time: datetime | None
    infos: list[Element]


@dataclass(frozen=True, slots=True)
class _Candidate:
    shape: str
    location: Location
    method: str | None
    confidence: float | None


def parse_pidf_lo(document: str | bytes) -> PidfLocation:
    """Read the caller's location from a PIDF-LO document.

    Never raises for bad content inside a PIDF-LO document: broken shapes become
    warnings. Raises PidfLoError for non-XML, for DTDs or entities, for a HELD error
    or a by-reference-only HELD answer, and for any other document.
    """
    root = _parse_xml(document)
    warnings: list[str] = []
    geoprivs = _geoprivs(root, warnings)
    candidates: list[_Candidate] = []
    civics: list[str] = []
    for geopriv in geoprivs:
        for info in geopriv.infos:
            confidence = _confidence(info, warnings)
            for child in info:
                if child.tag == f"{{{CIVIC}}}civicAddress":
                    text = _civic(child)
                    if text:
                        civics.append(text)
                    continue
                reader = _SHAPES.get(child.tag)
                if reader is None:
                    if _namespace(child.tag) in (GML, GEOSHAPE):
                        warnings.append(f"{_name(child.tag)}: shape not supported; ignored")
                    continue
                candidate = _candidate(child, reader, geopriv, confidence, warnings)
                if candidate is not None:
                    candidates.append(candidate)
    civic = civics[0] if civics else None
    if len(set(civics)) > 1:
        warnings.append(f"ca:civicAddress: {len(set(civics))} different addresses; kept the first")
    best = _best(candidates, warnings)
    if best is None:
        warnings.append(
            "no coordinates in the document; the civic address is kept for geocoding"
            if civic
            else "no usable location in the document"
        )
        method = next((g.method for g in geoprivs if g.method), None)
        return PidfLocation(None, civic, method, warnings)
    return PidfLocation(best.location, civic, best.method, warnings, best.shape, best.confidence)


def _parse_xml(document: str | bytes) -> Element:
    if len(document) > MAX_DOCUMENT_CHARS:
        raise PidfLoError(f"document of {len(document)} characters is over the limit")
    try:
        return SafeElementTree.fromstring(document, forbid_dtd=True)
    except SafeElementTree.ParseError as err:
        raise PidfLoError(f"not well-formed XML: {err}") from err
    except DefusedXmlException as err:
        raise PidfLoError(f"refused XML (DTDs and entities are not allowed): {err!r}") from err
    except (ValueError, LookupError) as err:
        # Unencodable characters in a str, an unknown encoding declared in bytes.
        raise PidfLoError(f"not readable as XML: {err}") from err


def _geoprivs(root: Element, warnings: list[str]) -> list[_Geopriv]:
    if root.tag == f"{{{HELD}}}error":
        raise PidfLoError(_held_error(root))
    if root.tag == f"{{{HELD}}}locationResponse":
        presence = root.find(f"{{{PIDF}}}presence")
        if presence is None:
            if root.find(f"{{{HELD}}}locationUriSet") is not None:
                raise PidfLoError(
                    "HELD locationResponse gives the location by reference only"
                    " (locationURI); nothing to read by value"
                )
            raise PidfLoError("HELD locationResponse without a PIDF presence document")
        root = presence
    if _namespace(root.tag) == NORMAU:
        # NORMAU puts the GeoShape geometry straight under the message element.
        return [_Geopriv(None, None, [root])]
    if root.tag != f"{{{PIDF}}}presence":
        raise PidfLoError(f"not PIDF-LO: the root element is {_name(root.tag)}")
    parents = {child: parent for parent in root.iter() for child in parent}
    found: list[_Geopriv] = []
    for geopriv in root.iter(f"{{{GEOPRIV}}}geopriv"):
        method_element = geopriv.find(f"{{{GEOPRIV}}}method")
        method = _text(method_element) if method_element is not None else None
        infos = geopriv.findall(f"{{{GEOPRIV}}}location-info")
        found.append(_Geopriv(method or None, _timestamp(geopriv, parents, warnings), infos))
    if not found:
        raise PidfLoError("not PIDF-LO: the presence document has no gp:geopriv location")
    return found


def _held_error(root: Element) -> str:
    messages = {
        m.get("{http://www.w3.org/XML/1998/namespace}lang", ""): _text(m)
        for m in root.findall(f"{{{HELD}}}message")
    }
    message = messages.get("en") or next(iter(messages.values()), "")
    return f"HELD error {root.get('code', '?')}: {message or 'no message'}"


def _timestamp(
    geopriv: Element, parents: dict[Element, Element], warnings: list[str]
) -> datetime | None:
    holder = parents.get(geopriv)
    while holder is not None and _local(holder.tag) not in _HOLDERS:
        holder = parents.get(holder)
    if holder is None:
        return None
    for child in holder:
        if child.tag in (f"{{{PIDF}}}timestamp", f"{{{DATA_MODEL}}}timestamp"):
            text = _text(child)
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                warnings.append(f"{_name(child.tag)}: {text[:40]!r} is not a time; ignored")
                return None
            if parsed.tzinfo is None:
                warnings.append(f"{_name(child.tag)}: {text!r} has no timezone; ignored")
                return None
            return parsed.astimezone(UTC)
    return None


def _confidence(info: Element, warnings: list[str]) -> float | None:
    element = info.find(f"{{{CONFIDENCE}}}confidence")
    if element is None:
        return None
    text = _text(element)
    if _NUMBER.fullmatch(text) and 0 <= float(text) <= 100:
        return float(text)
    warnings.append(f"con:confidence: {text[:40]!r} is not a percentage; ignored")
    return None


def _civic(element: Element) -> str | None:
    parts = []
    for child in element:
        value = " ".join(_text(child).split())
        if value:
            parts.append(f"{_local(child.tag)}: {value}")
    return "; ".join(parts) or None


def _candidate(
    element: Element,
    reader: Callable[[Element, list[str]], tuple[GeoPoint, float | None]],
    geopriv: _Geopriv,
    confidence: float | None,
    warnings: list[str],
) -> _Candidate | None:
    shape = _local(element.tag)
    try:
        centre, radius = reader(element, warnings)
        location = location_from_fix(
            lat=centre.lat,
            lon=centre.lon,
            radius_m=radius,
            method=geopriv.method or "unknown",
            time=geopriv.time,
        )
    except (_ShapeError, InvalidLocation) as err:
        warnings.append(f"{_name(element.tag)}: {err}; location dropped")
        return None
    return _Candidate(shape, location, geopriv.method, confidence)


def _best(candidates: list[_Candidate], warnings: list[str]) -> _Candidate | None:
    if not candidates:
        return None
    # A point without a radius has unknown uncertainty: not better than any known one.
    best = min(
        candidates,
        key=lambda c: (c.location.radius_m is None, c.location.radius_m or 0.0),
    )
    if len(candidates) > 1:
        warnings.append(
            f"{len(candidates)} locations given; used the {best.shape} with the smallest"
            " uncertainty"
        )
    for other in candidates:
        if other is best:
            continue
        apart = distance_m(best.location.point, other.location.point)
        reach = (best.location.radius_m or 0.0) + (other.location.radius_m or 0.0)
        if apart > reach:
            warnings.append(
                f"the {other.shape} at {other.location.point.lat:.5f},"
                f"{other.location.point.lon:.5f} lies {apart:.0f} m from the chosen"
                f" {best.shape}, outside both uncertainties"
            )
    return best


def _read_point(element: Element, notes: list[str]) -> tuple[GeoPoint, float | None]:
    return _pos(element, notes), None


def _read_circle(element: Element, notes: list[str]) -> tuple[GeoPoint, float | None]:
    return _pos(element, notes), _length(element, "radius", notes)


def _read_ellipse(element: Element, notes: list[str]) -> tuple[GeoPoint, float | None]:
    centre = _pos(element, notes)
    major = _length(element, "semiMajorAxis", notes)
    minor = _length(element, "semiMinorAxis", notes, required=False)
    # The smallest circle around an ellipse has its longer semi-axis as radius; the
    # max() also covers an encoder that swapped the two axes.
    radius = max(major, minor or 0.0)
    notes.append(
        f"{_name(element.tag)}: used as a circle of its semi-major axis ({radius:g} m)"
        " around its centre"
    )
    return centre, radius


def _read_arc_band(element: Element, notes: list[str]) -> tuple[GeoPoint, float | None]:
    antenna = _pos(element, notes)
    inner = _length(element, "innerRadius", notes)
    outer = _length(element, "outerRadius", notes)
    start = _angle(element, "startAngle", notes)
    opening = _angle(element, "openingAngle", notes)
    if not inner < outer:
        raise _ShapeError(f"gs:innerRadius {inner:g} m is not less than gs:outerRadius")
    if not 0 < opening <= 360:
        raise _ShapeError(f"gs:openingAngle {opening:g} degrees is not in 0..360")
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
        raise _ShapeError("no gml:exterior/gml:LinearRing")
    pos_lists = ring.findall(f"{{{GML}}}posList")
    poses = ring.findall(f"{{{GML}}}pos")
    if len(pos_lists) == 1 and not poses:
        dims = _int_attribute(pos_lists[0], "srsDimension", dims)
        numbers = _numbers(pos_lists[0], "gml:posList")
        if dims not in (2, 3) or len(numbers) % dims:
            raise _ShapeError(f"gml:posList has {len(numbers)} numbers, not {dims}-D positions")
        tuples = [numbers[i : i + dims] for i in range(0, len(numbers), dims)]
    elif poses and not pos_lists:
        tuples = [_numbers(p, "gml:pos") for p in poses]
    else:
        raise _ShapeError("the ring needs one gml:posList or a series of gml:pos")
    if len(tuples) > _MAX_VERTICES:
        raise _ShapeError(f"{len(tuples)} vertices is over the limit of {_MAX_VERTICES}")
    vertices = [_point(t, "gml:LinearRing") for t in tuples]
    if vertices and vertices[0] != vertices[-1]:
        notes.append("gml:LinearRing: ring not closed (first vertex is not the last); closed it")
    elif vertices:
        vertices.pop()
    if len(set(vertices)) < 3:
        raise _ShapeError("the ring has fewer than 3 distinct vertices")
    return _enclosing_circle(vertices, notes, name="gml:Polygon")


def _read_prism(element: Element, notes: list[str]) -> tuple[GeoPoint, float | None]:
    base = element.find(f"{{{GEOSHAPE}}}base/{{{GML}}}Polygon")
    if base is None:
        raise _ShapeError("no gs:base/gml:Polygon")
    # The prism names its CRS; the base polygon inherits it (the tree is ours to edit).
    if base.get("srsName") is None and element.get("srsName") is not None:
        base.set("srsName", element.get("srsName", ""))
    return _read_polygon(base, notes)


# Each shape reader returns (centre, radius in metres or None) and may add notes.
_SHAPES: dict[str, Callable[[Element, list[str]], tuple[GeoPoint, float | None]]] = {
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
    if polygon.is_valid and polygon.area > 0:
        centroid = polygon.centroid
    else:
        hull = polygon.convex_hull
        if hull.area <= 0:
            raise _ShapeError("the ring encloses no area")
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
            f"{_name(element.tag)}: no srsName; read as EPSG::4326 (latitude first),"
            " which RFC 5491 requires"
        )
        return 2
    match = _CRS.fullmatch(srs.strip())
    if match is None:
        raise _ShapeError(f"srsName {srs[:80]!r} is not EPSG::4326 or EPSG::4979")
    return 3 if match.group(1) == "4979" else 2


def _pos(element: Element, notes: list[str]) -> GeoPoint:
    _dimensions(element, notes)
    return _point(_numbers(_single(element, GML, "pos"), "gml:pos"), "gml:pos")


def _point(numbers: list[float], name: str) -> GeoPoint:
    # EPSG::4326 is 2-D, but encoders often append an altitude; it is not needed here.
    if len(numbers) not in (2, 3):
        raise _ShapeError(f"{name} has {len(numbers)} numbers, not latitude longitude")
    try:
        return GeoPoint(lat=numbers[0], lon=numbers[1])
    except InvalidCoordinate as err:
        raise _ShapeError(f"{name} {numbers[0]:g} {numbers[1]:g}: {err.reason}") from err


def _numbers(element: Element, name: str) -> list[float]:
    words = _text(element).split()
    bad = next((w for w in words if _NUMBER.fullmatch(w) is None), None)
    if bad is not None:
        raise _ShapeError(f"{name} {_text(element)[:60]!r}: {bad[:20]!r} is not a number")
    numbers = [float(w) for w in words]
    if not all(math.isfinite(n) for n in numbers):
        raise _ShapeError(f"{name} has a number out of range")
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
        raise _ShapeError(f"{name} unit {uom[:80]!r} is not metres (EPSG::9001)")
    value = _single_number(child, name)
    if not 0 <= value <= _MAX_LENGTH_M:
        raise _ShapeError(f"{name} {value:g} m is not a plausible distance")
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
        raise _ShapeError(f"{name} unit {uom[:80]!r} is not degrees (EPSG::9102)")
    return value


def _single_number(element: Element, name: str) -> float:
    numbers = _numbers(element, name)
    if len(numbers) != 1:
        raise _ShapeError(f"{name} {_text(element)[:40]!r} is not one number")
    return numbers[0]


def _single(element: Element, namespace: str, local: str) -> Element:
    found = element.findall(f"{{{namespace}}}{local}")
    name = f"{_PREFIXES.get(namespace, '')}{local}"
    if not found:
        raise _ShapeError(f"{name} missing")
    # Two values for one thing: either could be the wrong one, so neither is used.
    if len(found) > 1:
        raise _ShapeError(f"{len(found)} {name} elements")
    return found[0]


def _int_attribute(element: Element, attribute: str, default: int) -> int:
    value = (element.get(attribute) or "").strip()
    if not value:
        return default
    if value not in ("2", "3"):
        raise _ShapeError(f"{attribute}={value[:20]!r} is not 2 or 3")
    return int(value)


def _text(element: Element) -> str:
    return (element.text or "").strip()


def _namespace(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _name(tag: str) -> str:
    """A tag as people write it (``gs:Circle``), whatever prefix the document used."""
    namespace = _namespace(tag)
    prefix = _PREFIXES.get(namespace, f"{{{namespace}}}" if namespace else "")
    return f"{prefix}{_local(tag)}"

"""PIDF-LO location (RFC 4119, RFC 5491) from a telecom payload. Pure: no I/O.

The document as a whole is read here; `pidf_lo_geopriv` finds its locations,
`pidf_lo_shapes` reads each shape and `pidf_lo_xml` holds the namespaces and the safe
XML parse.

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
  smallest circle that holds the ellipse; a warning says so (and names the semi-minor
  axis when an encoder made it the longer one: the longer one is used).
- ``gml:Polygon`` (and the base of ``gs:Prism``): the centroid, and as radius the
  distance (``geo.distance.distance_m``) from it to the farthest vertex. A ring whose
  vertices lie on one line encloses no area: the shape is dropped with a warning.
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

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateways.telecom.pidf_lo_geopriv import Geopriv, civic_address, confidence_of, find_geoprivs
from gateways.telecom.pidf_lo_shapes import SHAPES, ShapeError
from gateways.telecom.pidf_lo_xml import (
    CIVIC,
    GEOSHAPE,
    GML,
    MAX_DOCUMENT_CHARS,
    PidfLoError,
    local_name,
    namespace_of,
    parse_xml,
    prefixed,
)
from geo.distance import distance_m
from geo.location import InvalidLocation, Location, location_from_fix

if TYPE_CHECKING:
    from collections.abc import Callable
    from xml.etree.ElementTree import Element

    from geo.points import GeoPoint

__all__ = ["MAX_DOCUMENT_CHARS", "PidfLoError", "PidfLocation", "parse_pidf_lo"]


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
    root = parse_xml(document)
    warnings: list[str] = []
    geoprivs = find_geoprivs(root, warnings)
    candidates: list[_Candidate] = []
    civics: list[str] = []
    for geopriv in geoprivs:
        for info in geopriv.infos:
            confidence = confidence_of(info, warnings)
            for child in info:
                if child.tag == f"{{{CIVIC}}}civicAddress":
                    text = civic_address(child)
                    if text:
                        civics.append(text)
                    continue
                reader = SHAPES.get(child.tag)
                if reader is None:
                    if namespace_of(child.tag) in (GML, GEOSHAPE):
                        warnings.append(f"{prefixed(child.tag)}: shape not supported; ignored")
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


def _candidate(
    element: Element,
    reader: Callable[[Element, list[str]], tuple[GeoPoint, float | None]],
    geopriv: Geopriv,
    confidence: float | None,
    warnings: list[str],
) -> _Candidate | None:
    shape = local_name(element.tag)
    try:
        centre, radius = reader(element, warnings)
        location = location_from_fix(
            lat=centre.lat,
            lon=centre.lon,
            radius_m=radius,
            method=geopriv.method or "unknown",
            time=geopriv.time,
        )
    except (ShapeError, InvalidLocation) as err:
        warnings.append(f"{prefixed(element.tag)}: {err}; location dropped")
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

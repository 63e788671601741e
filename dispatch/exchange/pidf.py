"""A location as a PIDF-LO document (RFC 4119, RFC 5491 shapes): the form an EIDO's
``locationByValue`` carries. Pure; the gateways' parser (``gateways.telecom.pidf_lo``)
reads it back."""

from __future__ import annotations

from datetime import datetime

from lxml import etree

PIDF = "urn:ietf:params:xml:ns:pidf"
GEOPRIV = "urn:ietf:params:xml:ns:pidf:geopriv10"
DATA_MODEL = "urn:ietf:params:xml:ns:pidf:data-model"
GML = "http://www.opengis.net/gml"
GEO_SHAPES = "http://www.opengis.net/pidflo/1.0"
_NSMAP = {None: PIDF, "gp": GEOPRIV, "dm": DATA_MODEL, "gml": GML, "gs": GEO_SHAPES}
_WGS84_2D = "urn:ogc:def:crs:EPSG::4326"
_METRES = "urn:ogc:def:uom:EPSG::9001"

# Our location methods as RFC 4119 / IANA "Method Tokens"; others go as they came (a
# PIDF-LO's own method passes through unchanged).
_METHODS = {"gps": "GPS", "network": "Cell", "operator": "Manual", "aml": "Hybrid"}


def method_token(method: str | None) -> str:
    """The ``gp:method`` text for one of our location methods."""
    if not method:
        return "Unknown"
    return _METHODS.get(method, method)


def pidf_lo(
    *,
    entity: str,
    device_id: str,
    lat: float,
    lon: float,
    radius_m: float | None,
    method: str | None,
    at: datetime | None,
) -> str:
    """A PIDF-LO document: a Circle with the uncertainty radius (a Point without one),
    its method, and its time."""
    # lxml-stubs type nsmap without the None key that names the default namespace.
    presence = etree.Element(f"{{{PIDF}}}presence", nsmap=_NSMAP, entity=entity)  # type: ignore[arg-type]
    device = etree.SubElement(presence, f"{{{DATA_MODEL}}}device", id=device_id)
    geopriv = etree.SubElement(device, f"{{{GEOPRIV}}}geopriv")
    info = etree.SubElement(geopriv, f"{{{GEOPRIV}}}location-info")
    if radius_m:
        shape = etree.SubElement(info, f"{{{GEO_SHAPES}}}Circle", srsName=_WGS84_2D)
        etree.SubElement(shape, f"{{{GML}}}pos").text = f"{lat:.7f} {lon:.7f}"
        radius = etree.SubElement(shape, f"{{{GEO_SHAPES}}}radius", uom=_METRES)
        radius.text = f"{radius_m:.1f}"
    else:
        shape = etree.SubElement(info, f"{{{GML}}}Point", srsName=_WGS84_2D)
        etree.SubElement(shape, f"{{{GML}}}pos").text = f"{lat:.7f} {lon:.7f}"
    etree.SubElement(geopriv, f"{{{GEOPRIV}}}usage-rules")
    etree.SubElement(geopriv, f"{{{GEOPRIV}}}method").text = method_token(method)
    if at is not None:
        etree.SubElement(device, f"{{{DATA_MODEL}}}timestamp").text = at.isoformat()
    text: str = etree.tostring(presence, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>' + text

"""GML names and shape writers shared by the PIDF-LO shape tests (test_pidf_lo_shapes_*.py)."""

from __future__ import annotations

EPSG_4326 = "urn:ogc:def:crs:EPSG::4326"
METRE = "urn:ogc:def:uom:EPSG::9001"
DROPPED = "no usable location in the document"


def _ring(inner: str, srs: str | None = EPSG_4326) -> str:
    name = f' srsName="{srs}"' if srs is not None else ""
    return (
        f"<gml:Polygon{name}><gml:exterior><gml:LinearRing>{inner}</gml:LinearRing>"
        "</gml:exterior></gml:Polygon>"
    )


def _circle_of(radius: str, *, uom: str | None = METRE, pos: str = "20.29 85.82") -> str:
    unit = f' uom="{uom}"' if uom is not None else ""
    return (
        f'<gs:Circle srsName="{EPSG_4326}"><gml:pos>{pos}</gml:pos>'
        f"<gs:radius{unit}>{radius}</gs:radius></gs:Circle>"
    )

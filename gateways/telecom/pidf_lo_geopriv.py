"""Where a PIDF-LO document keeps its locations: the HELD wrapper, each ``gp:geopriv``
with its method, time and ``gp:location-info``, the confidence and the civic address."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateways.telecom.pidf_lo_xml import (
    CONFIDENCE,
    DATA_MODEL,
    GEOPRIV,
    HELD,
    NORMAU,
    NUMBER,
    PIDF,
    PidfLoError,
    local_name,
    namespace_of,
    prefixed,
    text_of,
)

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

_HOLDERS = frozenset({"tuple", "device", "person"})


@dataclass(frozen=True, slots=True)
class Geopriv:
    """One ``gp:geopriv``: its method, the time of what holds it, its location-infos."""

    method: str | None
    time: datetime | None
    infos: list[Element]


def find_geoprivs(root: Element, warnings: list[str]) -> list[Geopriv]:
    """Every geopriv of the document (HELD unwrapped), or PidfLoError when not PIDF-LO."""
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
    if namespace_of(root.tag) == NORMAU:
        # NORMAU puts the GeoShape geometry straight under the message element.
        return [Geopriv(None, None, [root])]
    if root.tag != f"{{{PIDF}}}presence":
        raise PidfLoError(f"not PIDF-LO: the root element is {prefixed(root.tag)}")
    parents = {child: parent for parent in root.iter() for child in parent}
    found: list[Geopriv] = []
    for geopriv in root.iter(f"{{{GEOPRIV}}}geopriv"):
        method_element = geopriv.find(f"{{{GEOPRIV}}}method")
        method = text_of(method_element) if method_element is not None else None
        infos = geopriv.findall(f"{{{GEOPRIV}}}location-info")
        found.append(Geopriv(method or None, _timestamp(geopriv, parents, warnings), infos))
    if not found:
        raise PidfLoError("not PIDF-LO: the presence document has no gp:geopriv location")
    return found


def _held_error(root: Element) -> str:
    messages = {
        m.get("{http://www.w3.org/XML/1998/namespace}lang", ""): text_of(m)
        for m in root.findall(f"{{{HELD}}}message")
    }
    message = messages.get("en") or next(iter(messages.values()), "")
    return f"HELD error {root.get('code', '?')}: {message or 'no message'}"


def _timestamp(
    geopriv: Element, parents: dict[Element, Element], warnings: list[str]
) -> datetime | None:
    holder = parents.get(geopriv)
    while holder is not None and local_name(holder.tag) not in _HOLDERS:
        holder = parents.get(holder)
    if holder is None:
        return None
    for child in holder:
        if child.tag in (f"{{{PIDF}}}timestamp", f"{{{DATA_MODEL}}}timestamp"):
            text = text_of(child)
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                warnings.append(f"{prefixed(child.tag)}: {text[:40]!r} is not a time; ignored")
                return None
            if parsed.tzinfo is None:
                warnings.append(f"{prefixed(child.tag)}: {text!r} has no timezone; ignored")
                return None
            return parsed.astimezone(UTC)
    return None


def confidence_of(info: Element, warnings: list[str]) -> float | None:
    """The ``con:confidence`` percentage of a location-info (RFC 7459), if valid."""
    element = info.find(f"{{{CONFIDENCE}}}confidence")
    if element is None:
        return None
    text = text_of(element)
    if NUMBER.fullmatch(text) and 0 <= float(text) <= 100:
        return float(text)
    warnings.append(f"con:confidence: {text[:40]!r} is not a percentage; ignored")
    return None


def civic_address(element: Element) -> str | None:
    """A ``ca:civicAddress`` as ``"country: IN; A1: ..."`` text, None when empty."""
    parts = []
    for child in element:
        value = " ".join(text_of(child).split())
        if value:
            parts.append(f"{local_name(child.tag)}: {value}")
    return "; ".join(parts) or None

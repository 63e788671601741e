"""XML of PIDF-LO: namespaces, the safe parse, and tag names as people write them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

if TYPE_CHECKING:
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

PREFIXES = {
    PIDF: "",
    GEOPRIV: "gp:",
    CIVIC: "ca:",
    DATA_MODEL: "dm:",
    GML: "gml:",
    GEOSHAPE: "gs:",
    CONFIDENCE: "con:",
    HELD: "held:",
}

# Real PIDF-LO bodies are a few kilobytes; this bounds the work one request can cause.
MAX_DOCUMENT_CHARS = 256 * 1024

# A decimal number as XML Schema writes it (no nan, inf or digit separators).
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


class PidfLoError(ValueError):
    """Input that is not PIDF-LO at all: not XML, unsafe XML, or another document."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_xml(document: str | bytes) -> Element:
    """The document's root element, or PidfLoError (not XML, too long, DTDs, entities)."""
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


def text_of(element: Element) -> str:
    """An element's text, stripped (empty when it has none)."""
    return (element.text or "").strip()


def namespace_of(tag: str) -> str:
    """The namespace of a ``{namespace}local`` tag (empty when it has none)."""
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def local_name(tag: str) -> str:
    """A tag without its namespace."""
    return tag.rpartition("}")[2]


def prefixed(tag: str) -> str:
    """A tag as people write it (``gs:Circle``), whatever prefix the document used."""
    namespace = namespace_of(tag)
    prefix = PREFIXES.get(namespace, f"{{{namespace}}}" if namespace else "")
    return f"{prefix}{local_name(tag)}"

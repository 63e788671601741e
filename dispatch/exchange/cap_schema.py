"""The shipped OASIS CAP 1.2 XML Schema (``schemas/cap/cap12.xsd``) and the check of an
alert against it."""

from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

XSD = Path(__file__).parent / "schemas" / "cap" / "cap12.xsd"


@functools.cache
def schema() -> etree.XMLSchema:
    """The CAP 1.2 schema, parsed once."""
    return etree.XMLSchema(etree.parse(str(XSD)))


def problems(xml: str | bytes) -> list[str]:
    """Every way an alert breaks CAP 1.2, each as "line N: what" (none if valid)."""
    data = xml.encode() if isinstance(xml, str) else xml
    # No DTDs, no entities, no network: the text is our own, but the check is general.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        document = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        return [f"not XML: {err}"]
    checker = schema()
    if checker.validate(document):
        return []
    errors = checker.error_log.filter_from_errors()  # type: ignore[attr-defined]
    return [f"line {e.line}: {e.message}" for e in errors]

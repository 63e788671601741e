"""A PIDF-LO document as a whole, read against RFC 4119, RFC 5491 and RFC 5985 (HELD).

Where a location may sit (``tuple``, ``dm:device``, ``dm:person``, and the ``dm:tuple``
old encoders wrote), which time goes with it (the ``timestamp`` of what holds the
geopriv, RFC 5491 section 3.2), which of several locations is used (the smallest
uncertainty; a disagreement is said), the confidence (RFC 7459: a percentage), the civic
address (RFC 5139), and what a HELD error or answer says. The samples in
tests/fixtures/pidf_lo cover the common documents; these cover what they do not.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from gateways.telecom.pidf_lo import MAX_DOCUMENT_CHARS, PidfLoError, parse_pidf_lo
from tests.test_pidf_lo import _presence

NS = (
    'xmlns="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"'
    ' xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0"'
    ' xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
    ' xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"'
    ' xmlns:con="urn:ietf:params:xml:ns:geopriv:conf"'
)
SRS = 'srsName="urn:ogc:def:crs:EPSG::4326"'
METRE = 'uom="urn:ogc:def:uom:EPSG::9001"'
POINT = f"<gml:Point {SRS}><gml:pos>20.2961 85.8245</gml:pos></gml:Point>"


def _circle(lat: float, lon: float, radius: float) -> str:
    return (
        f"<gs:Circle {SRS}><gml:pos>{lat} {lon}</gml:pos>"
        f"<gs:radius {METRE}>{radius}</gs:radius></gs:Circle>"
    )


def _geopriv(shapes: str, method: str | None = "GPS", extra: str = "") -> str:
    method_element = f"<gp:method>{method}</gp:method>" if method is not None else ""
    return (
        f"<gp:geopriv><gp:location-info>{shapes}{extra}</gp:location-info>"
        f"{method_element}</gp:geopriv>"
    )


def _document(body: str) -> str:
    return f'<presence {NS} entity="pres:+919437000000@example.in">{body}</presence>'


# Where the geopriv sits, and whose timestamp it takes.


@pytest.mark.parametrize(
    ("body", "time"),
    [
        (
            f"<tuple id='t'><status>{_geopriv(POINT)}</status>"
            "<timestamp>2025-01-01T16:00:00+05:30</timestamp></tuple>",
            datetime(2025, 1, 1, 10, 30, tzinfo=UTC),
        ),
        (
            f"<dm:person id='p'>{_geopriv(POINT)}"
            "<dm:timestamp>2025-01-01T10:31:00Z</dm:timestamp></dm:person>",
            datetime(2025, 1, 1, 10, 31, tzinfo=UTC),
        ),
        # dm:tuple is in the wrong namespace, but old encoders wrote it.
        (
            f"<dm:tuple id='t'><status>{_geopriv(POINT)}</status>"
            "<dm:timestamp>2025-01-01T10:32:00Z</dm:timestamp></dm:tuple>",
            datetime(2025, 1, 1, 10, 32, tzinfo=UTC),
        ),
        # Nested deeper (in a status in a device): still its holder's time.
        (
            f"<dm:device id='d'><status><inner>{_geopriv(POINT)}</inner></status>"
            "<dm:timestamp>2025-01-01T10:33:00Z</dm:timestamp></dm:device>",
            datetime(2025, 1, 1, 10, 33, tzinfo=UTC),
        ),
        # No holder's timestamp: no time rather than a guessed one.
        (f"<dm:device id='d'>{_geopriv(POINT)}</dm:device>", None),
        (f"<other>{_geopriv(POINT)}</other>", None),
    ],
)
def test_a_geopriv_takes_the_time_of_what_holds_it(body: str, time: datetime | None) -> None:
    result = parse_pidf_lo(_document(body))
    assert result.location is not None
    assert result.location.time == time
    assert result.warnings == []
    assert result.method == "GPS"


@pytest.mark.parametrize(
    ("stamp", "warning"),
    [
        ("2025-01-01T10:30:00", "dm:timestamp: '2025-01-01T10:30:00' has no timezone; ignored"),
        ("half past ten", "dm:timestamp: 'half past ten' is not a time; ignored"),
        (
            "x" * 50,
            f"dm:timestamp: {'x' * 40!r} is not a time; ignored",
        ),
    ],
)
def test_a_timestamp_that_is_no_time_is_named(stamp: str, warning: str) -> None:
    body = f"<dm:device id='d'>{_geopriv(POINT)}<dm:timestamp>{stamp}</dm:timestamp></dm:device>"
    result = parse_pidf_lo(_document(body))
    assert result.location is not None
    assert result.location.time is None
    assert result.warnings == [warning]


# Several locations: the smallest uncertainty, and a word when they disagree.


def test_several_locations_that_agree_give_one_warning() -> None:
    near = _circle(20.2961, 85.8245, 30) + _circle(20.2962, 85.8246, 80)
    result = parse_pidf_lo(_presence(near))
    assert result.location is not None
    assert result.location.radius_m == 30
    assert result.warnings == ["2 locations given; used the Circle with the smallest uncertainty"]


def test_a_location_outside_both_uncertainties_is_named() -> None:
    # 0.01 degree of latitude is 1112 m: beyond 30 + 80 m.
    apart = _circle(20.2961, 85.8245, 30) + _circle(20.3061, 85.8245, 80)
    result = parse_pidf_lo(_presence(apart))
    assert result.location is not None
    assert (result.location.point.lat, result.location.radius_m) == (20.2961, 30)
    assert result.warnings == [
        "2 locations given; used the Circle with the smallest uncertainty",
        "the Circle at 20.30610,85.82450 lies 1112 m from the chosen Circle,"
        " outside both uncertainties",
    ]


def test_a_point_within_the_circle_does_not_disagree() -> None:
    result = parse_pidf_lo(_presence(POINT + _circle(20.2965, 85.8245, 60)))
    assert result.shape == "Circle"
    assert result.warnings == ["2 locations given; used the Circle with the smallest uncertainty"]


def test_locations_in_separate_geoprivs_compete_and_the_method_follows_the_chosen() -> None:
    body = (
        f"<dm:device id='a'>{_geopriv(_circle(20.2961, 85.8245, 500), 'Cell')}</dm:device>"
        f"<dm:device id='b'>{_geopriv(_circle(20.2962, 85.8245, 10), 'GPS')}</dm:device>"
    )
    result = parse_pidf_lo(_document(body))
    assert result.location is not None
    assert (result.location.radius_m, result.method, result.location.method) == (10, "GPS", "GPS")


def test_without_a_location_the_method_is_the_first_one_given() -> None:
    body = (
        f"<dm:device id='a'>{_geopriv('', None)}</dm:device>"
        f"<dm:device id='b'>{_geopriv('', 'Cell')}</dm:device>"
        f"<dm:device id='c'>{_geopriv('', 'GPS')}</dm:device>"
    )
    result = parse_pidf_lo(_document(body))
    assert (result.location, result.method) == (None, "Cell")
    assert result.warnings == ["no usable location in the document"]


def test_a_location_without_a_method_is_of_unknown_method() -> None:
    result = parse_pidf_lo(_document(f"<dm:device id='a'>{_geopriv(POINT, None)}</dm:device>"))
    assert result.location is not None
    assert (result.method, result.location.method) == (None, "unknown")


# Confidence (RFC 7459) and civic address (RFC 5139).


@pytest.mark.parametrize(
    ("confidence", "read", "warnings"),
    [
        ("95", 95.0, []),
        ("0", 0.0, []),
        ("100", 100.0, []),
        ("100.5", None, ["con:confidence: '100.5' is not a percentage; ignored"]),
        ("-1", None, ["con:confidence: '-1' is not a percentage; ignored"]),
        ("high", None, ["con:confidence: 'high' is not a percentage; ignored"]),
    ],
)
def test_confidence_is_a_percentage(
    confidence: str, read: float | None, warnings: list[str]
) -> None:
    extra = f'<con:confidence pdf="normal">{confidence}</con:confidence>'
    body = f"<dm:device id='a'>{_geopriv(POINT, extra=extra)}</dm:device>"
    result = parse_pidf_lo(_document(body))
    assert result.confidence == read
    assert result.warnings == warnings
    assert result.location is not None


def test_a_civic_address_is_text_and_two_different_ones_are_flagged() -> None:
    first = (
        "<ca:civicAddress><ca:country>IN</ca:country><ca:A1>Odisha</ca:A1>"
        "<ca:A3>  Bhubaneswar\n   </ca:A3><ca:RD>Janpath   Road</ca:RD><ca:HNO></ca:HNO>"
        "</ca:civicAddress>"
    )
    second = "<ca:civicAddress><ca:country>IN</ca:country><ca:A1>Kerala</ca:A1></ca:civicAddress>"
    empty = "<ca:civicAddress><ca:A1> </ca:A1></ca:civicAddress>"
    body = (
        f"<dm:device id='a'>{_geopriv(first + empty)}</dm:device>"
        f"<dm:device id='b'>{_geopriv(second)}</dm:device>"
    )
    result = parse_pidf_lo(_document(body))
    assert result.civic == "country: IN; A1: Odisha; A3: Bhubaneswar; RD: Janpath Road"
    assert result.warnings == [
        "ca:civicAddress: 2 different addresses; kept the first",
        "no coordinates in the document; the civic address is kept for geocoding",
    ]


def test_the_same_civic_address_twice_is_no_disagreement() -> None:
    civic = "<ca:civicAddress><ca:country>IN</ca:country></ca:civicAddress>"
    body = f"<dm:device id='a'>{_geopriv(civic + civic + POINT)}</dm:device>"
    result = parse_pidf_lo(_document(body))
    assert result.civic == "country: IN"
    assert result.warnings == []


def test_an_unknown_shape_is_named_and_other_elements_are_not() -> None:
    shapes = (
        f"<gml:LineString {SRS}><gml:posList>20 85 21 86</gml:posList></gml:LineString>"
        "<gs:Tetrahedron/><vendor:extra xmlns:vendor='urn:example'>1</vendor:extra>" + POINT
    )
    result = parse_pidf_lo(_presence(shapes))
    assert result.shape == "Point"
    assert result.warnings == [
        "gml:LineString: shape not supported; ignored",
        "gs:Tetrahedron: shape not supported; ignored",
    ]


# What is not PIDF-LO, and HELD (RFC 5985).

HELD = 'xmlns="urn:ietf:params:xml:ns:geopriv:held"'
XML_LANG = "xml:lang"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            f'<error {HELD} code="locationUnknown"><message {XML_LANG}="hi">स्थान अज्ञात</message>'
            f'<message {XML_LANG}="en">no location for this device</message></error>',
            "HELD error locationUnknown: no location for this device",
        ),
        (
            f'<error {HELD} code="timeout"><message {XML_LANG}="fr">délai dépassé</message>'
            f'<message {XML_LANG}="de">Zeitüberschreitung</message></error>',
            "HELD error timeout: délai dépassé",
        ),
        (f'<error {HELD} code="busy"/>', "HELD error busy: no message"),
        (f"<error {HELD}><message>x</message></error>", "HELD error ?: x"),
        (
            f"<locationResponse {HELD}><other/></locationResponse>",
            "HELD locationResponse without a PIDF presence document",
        ),
        (
            f'<presence {NS} entity="pres:x@example.in"><tuple id="t"/></presence>',
            "not PIDF-LO: the presence document has no gp:geopriv location",
        ),
        ("<html><body>112</body></html>", "not PIDF-LO: the root element is html"),
        (
            '<gp:geopriv xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"/>',
            "not PIDF-LO: the root element is gp:geopriv",
        ),
    ],
)
def test_what_is_not_a_location_by_value_raises_with_its_reason(document: str, reason: str) -> None:
    with pytest.raises(PidfLoError) as caught:
        parse_pidf_lo(document)
    assert caught.value.reason == reason
    assert str(caught.value) == reason


def test_a_document_over_the_limit_is_refused_and_one_at_it_is_read() -> None:
    document = _presence(POINT)
    padded = document.replace("<presence ", "<presence " + " " * 10, 1)
    at_limit = padded.replace("<presence ", "<presence " + " " * (MAX_DOCUMENT_CHARS - len(padded)))
    assert len(at_limit) == MAX_DOCUMENT_CHARS
    assert parse_pidf_lo(at_limit).shape == "Point"
    with pytest.raises(PidfLoError) as caught:
        parse_pidf_lo(at_limit.replace("<presence ", "<presence  ", 1))
    assert (
        caught.value.reason == f"document of {MAX_DOCUMENT_CHARS + 1} characters is over the limit"
    )


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            '<?xml version="1.0"?><!DOCTYPE presence [<!ENTITY a "b">]><presence/>',
            "refused XML (DTDs and entities are not allowed): ",
        ),
        (b'<?xml version="1.0" encoding="x-no-such"?><presence/>', "not readable as XML: "),
        ("<presence", "not well-formed XML: "),
    ],
)
def test_unsafe_or_unreadable_xml_is_refused(document: str | bytes, reason: str) -> None:
    with pytest.raises(PidfLoError) as caught:
        parse_pidf_lo(document)
    assert caught.value.reason.startswith(reason)


def test_a_normau_message_is_read_without_the_pidf_wrapper() -> None:
    document = (
        '<postTerminalLocation xmlns="http://www.telecom.gouv.fr/normau/messages"'
        ' xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0">'
        f"{_circle(48.884, 2.245, 40)}</postTerminalLocation>"
    )
    result = parse_pidf_lo(document)
    assert result.location is not None
    assert (result.location.point.lat, result.location.radius_m, result.method) == (
        48.884,
        40,
        None,
    )


def test_a_held_answer_by_reference_says_so() -> None:
    document = (
        f"<locationResponse {HELD}><locationUriSet expires='2025-01-01T11:00:00Z'>"
        "<locationURI>https://lis.example.in/loc/1</locationURI></locationUriSet>"
        "</locationResponse>"
    )
    with pytest.raises(PidfLoError) as caught:
        parse_pidf_lo(document)
    assert caught.value.reason == (
        "HELD locationResponse gives the location by reference only (locationURI);"
        " nothing to read by value"
    )


def test_a_document_type_declaration_alone_is_refused() -> None:
    with pytest.raises(PidfLoError) as caught:
        parse_pidf_lo(f"<!DOCTYPE presence><presence {NS}/>")
    assert caught.value.reason.startswith("refused XML (DTDs and entities are not allowed)")


def test_a_root_in_another_namespace_is_named_with_it() -> None:
    with pytest.raises(PidfLoError) as caught:
        parse_pidf_lo('<report xmlns="urn:example:other"/>')
    assert caught.value.reason == "not PIDF-LO: the root element is {urn:example:other}report"


def test_a_document_without_location_or_method() -> None:
    result = parse_pidf_lo(_document(f"<dm:device id='a'>{_geopriv('', None)}</dm:device>"))
    assert (result.location, result.method, result.civic) == (None, None, None)


def test_a_timestamp_is_utc_whatever_the_servers_timezone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server in India runs on IST; the time of a location is still UTC."""
    body = (
        f"<dm:device id='d'>{_geopriv(POINT)}"
        "<dm:timestamp>2025-01-01T10:30:00+01:00</dm:timestamp></dm:device>"
    )
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        result = parse_pidf_lo(_document(body))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert result.location is not None
    assert result.location.time is not None
    assert result.location.time.isoformat() == "2025-01-01T09:30:00+00:00"

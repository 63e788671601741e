"""AML's HTTPS form: the fields the replayed samples do not carry, read against ETSI TS 103 625.

The HTTPS form (Annex of TS 103 625, and Google's ELS http-spec it follows): every field
optional, times in Unix milliseconds, ``location_certainty`` a percentage and
``location_confidence`` a fraction. Each value is checked as the operator would see it, and
each broken value by the exact warning that names it (a warning an operator reads is part of
the behaviour). Values are placed in Odisha on Indian networks, as the fixtures are. Query
answers are in tests/test_aml_forms_query.py.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from gateways.aml.parse import AmlError, parse_aml_https, verify_aml_https_hmac

PLACE = "location_latitude=20.2961&location_longitude=85.8245"

# 2025-01-01T10:30:00.500Z and, five and a half seconds before it, the call.
FIX_MS = "1735727400500"
CALL_MS = "1735727395000"


def test_every_https_field_is_read() -> None:
    body = (
        f"v=3&device_number=%2B919437012345&{PLACE}&location_time={FIX_MS}&time={CALL_MS}"
        "&location_accuracy=14.2&location_source=gnss&location_confidence=0.68"
        "&location_altitude=-12.5&location_vertical_accuracy=8"
        "&device_languages=en-IN,hi-IN&emergency_number=112&device_imei=356708041746734"
        "&device_imsi=405853000000000&cell_network_mcc=405&cell_network_mnc=853"
        "&cell_home_mcc=404&cell_home_mnc=86"
    )
    message = parse_aml_https(body.encode())
    assert (message.warnings, message.location_error) == ([], None)
    assert (message.kind, message.version) == ("https", 3)
    assert (message.lat, message.lon, message.radius_m) == (20.2961, 85.8245, 14.2)
    assert message.time == datetime(2025, 1, 1, 10, 30, 0, 500_000, tzinfo=UTC)
    assert message.call_time == datetime(2025, 1, 1, 10, 29, 55, tzinfo=UTC)
    # GNSS is satellite positioning: the same method as GPS for the operator.
    assert message.positioning_method == "gps"
    assert message.confidence == 68
    assert (message.altitude_m, message.vertical_accuracy_m) == (-12.5, 8.0)
    assert message.languages == "en-IN,hi-IN"
    assert (message.emergency_number, message.device_number) == ("112", "+919437012345")
    assert (message.imei, message.imsi) == ("356708041746734", "405853000000000")
    assert (message.mcc, message.mnc, message.home_mcc, message.home_mnc) == (
        "405",
        "853",
        "404",
        "86",
    )
    assert message.fields["location_source"] == "gnss"
    assert message.location is not None
    assert message.location.method == "gps"
    assert message.location.time == message.time


def test_the_report_payload_is_json_with_iso_times() -> None:
    message = parse_aml_https(f"v=1&{PLACE}&location_accuracy=20&time={CALL_MS}")
    assert message.to_json() == {
        "lat": 20.2961,
        "lon": 85.8245,
        "radius_m": 20.0,
        "kind": "https",
        "version": 1,
        "location_error": None,
        "time": None,
        "positioning_method": None,
        "confidence": None,
        "imsi": None,
        "imei": None,
        "mcc": None,
        "mnc": None,
        "home_mcc": None,
        "home_mnc": None,
        "length": None,
        "length_matches": None,
        "emergency_number": None,
        "call_time": "2025-01-01T10:29:55+00:00",
        "altitude_m": None,
        "vertical_accuracy_m": None,
        "languages": None,
        "device_number": None,
        "warnings": [],
        "fields": {
            "v": "1",
            "location_latitude": "20.2961",
            "location_longitude": "85.8245",
            "location_accuracy": "20",
            "time": CALL_MS,
        },
    }


@pytest.mark.parametrize(
    ("fields", "confidence", "warnings"),
    [
        # A certainty (percent) wins over a confidence (fraction) when both are given.
        ("location_certainty=70&location_confidence=0.5", 70, []),
        ("location_certainty=&location_confidence=0.5", 50, []),
        ("location_confidence=1", 100, []),
        ("location_confidence=1.0", 100, []),
        ("location_confidence=0", 0, []),
        ("location_confidence=0.957", 96, []),
        ("location_confidence=1.5", None, ["location_confidence: '1.5' is not 0..1; ignored"]),
        ("location_confidence=68", None, ["location_confidence: '68' is not 0..1; ignored"]),
        ("location_certainty=100", 100, []),
        (
            "location_certainty=101",
            None,
            ["location_certainty: 101 is more than 100 %; ignored"],
        ),
        (
            "location_certainty=0.7",
            None,
            ["location_certainty: '0.7' is not a whole percentage; ignored"],
        ),
    ],
)
def test_certainty_is_a_percentage_and_confidence_a_fraction(
    fields: str, confidence: int | None, warnings: list[str]
) -> None:
    message = parse_aml_https(f"v=1&{PLACE}&{fields}")
    assert message.confidence == confidence
    assert message.warnings == warnings
    assert message.location is not None


@pytest.mark.parametrize(
    ("field", "warning"),
    [
        ("v=abcd", "v: 'abcd' is not a version number; ignored"),
        ("v=1234", "v: '1234' is not a version number; ignored"),
        ("time=99999999999999999", "time: '99999999999999999' is not a Unix time; ignored"),
        # 5000-01-01 in milliseconds: a number, but not a time a handset lives in.
        ("time=95617584000000", "time: 95617584000000 is not a plausible Unix time; ignored"),
        ("location_altitude=1e3", "location_altitude: '1e3' is not an altitude in metres; ignored"),
        (
            "location_vertical_accuracy=-3",
            "location_vertical_accuracy: '-3' is not an accuracy in metres; ignored",
        ),
        ("device_languages=e", "device_languages: 'e' is not a list of language tags; ignored"),
        ("emergency_number=11a2", "emergency_number: '11a2' is not a dialled number; ignored"),
        ("device_number=x", "device_number: 'x' is not a phone number; ignored"),
        ("device_imsi=4058", "device_imsi: '4058' is not an IMSI (up to 15 digits); ignored"),
        ("device_imei=3567", "device_imei: '3567' is not an IMEI (14 to 16 digits); ignored"),
        (
            "cell_network_mcc=4050",
            "cell_network_mcc: '4050' is not a mobile country code (3 digits); ignored",
        ),
        (
            "cell_network_mnc=8",
            "cell_network_mnc: '8' is not a mobile network code (2 or 3 digits); ignored",
        ),
        (
            "cell_home_mcc=40",
            "cell_home_mcc: '40' is not a mobile country code (3 digits); ignored",
        ),
        (
            "cell_home_mnc=8531",
            "cell_home_mnc: '8531' is not a mobile network code (2 or 3 digits); ignored",
        ),
        (
            "location_source=sonar",
            "location_source: 'sonar' is not a positioning method (gps, wifi, cell or unknown);"
            " ignored",
        ),
    ],
)
def test_a_broken_https_field_is_named_and_the_location_kept(field: str, warning: str) -> None:
    version = "" if field.startswith("v=") else "v=1&"
    message = parse_aml_https(f"{version}{PLACE}&location_accuracy=20&{field}")
    assert message.warnings == [warning]
    assert (message.lat, message.lon, message.radius_m) == (20.2961, 85.8245, 20.0)
    key = field.partition("=")[0]
    assert message.fields[key] == field.partition("=")[2]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"v=1&location_latitude=20.2961\xff", "not UTF-8 text"),
        ("v=1&x=" + "9" * 65_531, "65537 characters is too long for an AML body"),
        ("device_model=Example+Phone&cell_id=0213454321", "no AML fields"),
    ],
)
def test_what_is_not_an_https_aml_body_raises(body: str | bytes, reason: str) -> None:
    with pytest.raises(AmlError) as caught:
        parse_aml_https(body)
    assert caught.value.field == "body"
    assert caught.value.reason.startswith(reason)
    assert str(caught.value) == f"body: {caught.value.reason}"


def test_an_https_body_at_the_size_limit_is_read() -> None:
    body = f"v=1&{PLACE}&x="
    message = parse_aml_https(body + "9" * (65_536 - len(body)))
    assert (message.lat, message.lon) == (20.2961, 85.8245)


def test_the_callers_number_alone_is_a_report_without_location() -> None:
    message = parse_aml_https("device_number=%2B919437012345")
    assert message.device_number == "+919437012345"
    assert message.location is None
    assert message.location_error == "location_latitude: latitude missing"
    assert message.version is None


@pytest.mark.parametrize(
    "body",
    ["v=1", "location_latitude=20.2961", "location_longitude=85.8245", "device_number=112"],
)
def test_any_one_aml_field_makes_a_body_aml(body: str) -> None:
    message = parse_aml_https(body)
    assert message.kind == "https"
    assert message.location is None


def test_an_empty_field_is_kept_as_received() -> None:
    message = parse_aml_https(f"v=1&{PLACE}&cell_carrier=&device_model=")
    assert message.fields["cell_carrier"] == ""
    assert message.fields["device_model"] == ""
    assert message.warnings == []


def test_a_body_of_more_than_500_fields_is_refused() -> None:
    fields = [f"v=1&{PLACE}"] + [f"x{i}=1" for i in range(497)]
    assert parse_aml_https("&".join(fields)).lat == 20.2961
    with pytest.raises(AmlError) as caught:
        parse_aml_https("&".join([*fields, "x=1"]))
    assert caught.value.field == "body"
    assert caught.value.reason.startswith("not a form-encoded AML body: ")


@pytest.mark.parametrize(
    ("place", "error"),
    [
        (
            "location_latitude=90.5&location_longitude=85.8245",
            "location_latitude: latitude 90.5 is outside -90..90",
        ),
        (
            "location_latitude=20.2961&location_longitude=-180.5",
            "location_longitude: longitude -180.5 is outside -180..180",
        ),
        (
            "location_latitude=0&location_longitude=0",
            "location_latitude/location_longitude: position 0,0 is a placeholder, not a fix",
        ),
    ],
)
def test_an_https_position_out_of_range_is_no_location(place: str, error: str) -> None:
    message = parse_aml_https(f"v=1&{place}&device_number=112")
    assert message.location is None
    assert message.location_error == error
    assert message.device_number == "112"


def test_the_hmac_is_the_last_field() -> None:
    """What a sender signed is everything before the last ``&hmac=``: a value that
    looks like an hmac field earlier in the body is part of what is signed."""
    signed = f"v=1&{PLACE}&hmac=0000&device_number=112".encode()
    digest = hmac.new(b"erss-test-key", signed, hashlib.sha1).hexdigest()
    assert verify_aml_https_hmac(signed + b"&hmac=" + digest.encode(), b"erss-test-key")
    assert verify_aml_https_hmac(signed + b"&hmac=" + digest.upper().encode(), "erss-test-key")
    assert not verify_aml_https_hmac(signed + b"&hmac=\xff" + digest[1:].encode(), "erss-test-key")


@pytest.mark.parametrize(
    ("field", "read"),
    [
        ("device_imsi=40585", ("imsi", "40585")),
        ("device_imsi=4058530000000001", ("imsi", None)),
        ("device_imei=35670804174673", ("imei", "35670804174673")),
        ("device_imei=35670804174673412", ("imei", None)),
        ("cell_network_mnc=8530", ("mnc", None)),
        ("cell_home_mcc=4040", ("home_mcc", None)),
    ],
)
def test_https_identifiers_at_the_edges_of_their_lengths(
    field: str, read: tuple[str, str | None]
) -> None:
    message = parse_aml_https(f"v=1&{PLACE}&{field}")
    assert getattr(message, read[0]) == read[1]
    assert (message.warnings == []) == (read[1] is not None)

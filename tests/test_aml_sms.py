"""AML SMS fields one by one, read against ETSI TS 103 625 (v1) and the v2 SMS.

v1: ``lt``/``lg`` in decimal degrees (-90..90, -180..180), ``rd`` metres, ``top``
YYYYMMDDhhmmss, ``lc`` percent, ``pm`` G/W/C/N, ``si`` IMSI (up to 15 digits), ``ei``
IMEI (14 to 16 digits), ``mcc`` 3 digits, ``mnc`` 2 or 3 digits, ``ml`` the length.
v2: ``et`` the call time (Unix seconds), ``lt`` the fix time relative to it, ``lo`` lat,
lon, accuracy, ``lz`` altitude and its accuracy, ``nc``/``hc`` MCC and MNC run together.
A broken value is named by the exact warning the operator reads, and only that value is
lost; a broken coordinate loses the location and says why.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateways.aml.parse import AmlError, parse_aml_sms
from tests.test_aml import _with_length

# Bhubaneswar, on Vodafone Idea Odisha (405-853), the fix at 10:30 UTC on 1 Jan 2025.
V1 = {
    "lt": "+20.29610",
    "lg": "+085.82450",
    "rd": "20",
    "top": "20250101103000",
    "lc": "68",
    "pm": "G",
    "si": "405853000000000",
    "ei": "356708041746734",
    "mcc": "405",
    "mnc": "853",
}


def _v1(**change: str | None) -> str:
    fields = {**V1, **change}
    return 'A"ML=1;' + ";".join(f"{k}={v}" for k, v in fields.items() if v is not None)


def test_the_base_message_is_read_without_a_warning() -> None:
    message = parse_aml_sms(_v1())
    assert (message.warnings, message.location_error) == ([], None)
    assert (message.lat, message.lon, message.radius_m) == (20.2961, 85.8245, 20.0)
    assert (message.imsi, message.imei, message.mcc, message.mnc) == (
        "405853000000000",
        "356708041746734",
        "405",
        "853",
    )
    assert (message.length, message.length_matches) == (None, None)


@pytest.mark.parametrize(
    ("change", "read", "warnings"),
    [
        # Identifiers at the edges of their lengths, and one digit past them.
        ({"si": "40585"}, ("imsi", "40585"), []),
        ({"si": "4058"}, ("imsi", None), ["si: '4058' is not an IMSI (up to 15 digits); ignored"]),
        (
            {"si": "4058530000000001"},
            ("imsi", None),
            ["si: '4058530000000001' is not an IMSI (up to 15 digits); ignored"],
        ),
        ({"ei": "35670804174673"}, ("imei", "35670804174673"), []),
        ({"ei": "3567080417467341"}, ("imei", "3567080417467341"), []),
        (
            {"ei": "3567080417467"},
            ("imei", None),
            ["ei: '3567080417467' is not an IMEI (14 to 16 digits); ignored"],
        ),
        (
            {"ei": "35670804174673412"},
            ("imei", None),
            ["ei: '35670804174673412' is not an IMEI (14 to 16 digits); ignored"],
        ),
        (
            {"mcc": "4050"},
            ("mcc", None),
            ["mcc: '4050' is not a mobile country code (3 digits); ignored"],
        ),
        ({"mnc": "02"}, ("mnc", "02"), []),
        (
            {"mnc": "0253"},
            ("mnc", None),
            ["mnc: '0253' is not a mobile network code (2 or 3 digits); ignored"],
        ),
        ({"lc": "100"}, ("confidence", 100), []),
        ({"lc": "101"}, ("confidence", None), ["lc: 101 is more than 100 %; ignored"]),
        # An empty value is an absent one: nothing to warn about.
        ({"si": ""}, ("imsi", None), []),
        # 30 February does not exist.
        (
            {"top": "20250230103000"},
            ("time", None),
            ["top: 20250230103000 is not a valid date and time; ignored"],
        ),
        (
            {"rd": "abc"},
            ("radius_m", None),
            [
                "rd: 'abc' is not a radius in metres; ignored",
                "rd: no radius given; the uncertainty of the location is unknown",
            ],
        ),
        (
            {"rd": None},
            ("radius_m", None),
            ["rd: no radius given; the uncertainty of the location is unknown"],
        ),
        # rd=N is how handsets say "no accuracy": not an error in the value.
        (
            {"rd": "N"},
            ("radius_m", None),
            ["rd: no radius given; the uncertainty of the location is unknown"],
        ),
        # A value too long to show whole is cut, so the warning stays readable.
        (
            {"si": "x" * 41},
            ("imsi", None),
            [f"si: '{'x' * 37}...' is not an IMSI (up to 15 digits); ignored"],
        ),
        (
            {"si": "x" * 40},
            ("imsi", None),
            [f"si: '{'x' * 40}' is not an IMSI (up to 15 digits); ignored"],
        ),
    ],
)
def test_a_v1_value_is_read_or_named(
    change: dict[str, str | None], read: tuple[str, object], warnings: list[str]
) -> None:
    message = parse_aml_sms(_v1(**change))
    attribute, value = read
    assert getattr(message, attribute) == value
    assert message.warnings == warnings
    assert (message.lat, message.lon) == (20.2961, 85.8245)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"lt": "+90.5"}, "lt: latitude +90.5 is outside -90..90"),
        ({"lg": "+180.5"}, "lg: longitude +180.5 is outside -180..180"),
        ({"lg": "east"}, "lg: 'east' is not a longitude in decimal degrees"),
        ({"lg": None}, "lg: longitude missing"),
        ({"pm": "N"}, "pm: N, the handset reported that it had no position fix"),
    ],
)
def test_a_v1_coordinate_out_of_its_range_gives_no_location(
    change: dict[str, str | None], error: str
) -> None:
    message = parse_aml_sms(_v1(**change))
    assert message.location is None
    assert message.location_error == error
    # What does not depend on the fix is still read.
    assert message.imei == "356708041746734"


@pytest.mark.parametrize(("lt", "lg"), [("+90.0", "+085.8245"), ("+20.2961", "-180.0")])
def test_the_ends_of_the_coordinate_ranges_are_positions(lt: str, lg: str) -> None:
    message = parse_aml_sms(_v1(lt=lt, lg=lg))
    assert (message.lat, message.lon) == (float(lt), float(lg))
    assert message.location_error is None


def test_unknown_keys_are_named_as_written() -> None:
    message = parse_aml_sms(_v1() + ";KL=5;k1=3")
    assert message.warnings == ["KL: unknown field; ignored", "'k1': unknown field; ignored"]
    assert message.fields["KL"] == "5"


def test_one_trailing_separator_is_harmless_and_others_are_counted() -> None:
    assert parse_aml_sms(_v1() + ";").warnings == []
    assert parse_aml_sms(_v1().replace(";rd=", ";;rd=") + ";;").warnings == [
        "2 empty field(s) between ';' ignored"
    ]


def test_a_field_that_is_not_key_value_does_not_hide_the_ones_after_it() -> None:
    text = _v1().replace(";lg=", ";help me;lg=")
    message = parse_aml_sms(text)
    assert message.warnings == ["'help me': not a key=value field; ignored"]
    assert (message.lat, message.lon) == (20.2961, 85.8245)


def test_a_message_without_its_header_is_read_as_v1_and_says_so_first() -> None:
    text = _v1().removeprefix('A"ML=1;').replace(";rd=", ";;rd=")
    message = parse_aml_sms(text)
    assert message.version is None
    assert message.warnings == [
        'A"ML: header missing; read as version 1 from its keys',
        "1 empty field(s) between ';' ignored",
    ]
    assert (message.lat, message.lon, message.radius_m) == (20.2961, 85.8245, 20.0)


def test_a_right_length_field_matches() -> None:
    text = _with_length(_v1() + ";ml=")
    message = parse_aml_sms(text)
    assert (message.length, message.length_matches, message.warnings) == (len(text), True, [])


def test_a_wrong_length_field_is_a_warning_not_an_error() -> None:
    text = _v1() + ";ml=9"
    message = parse_aml_sms(text)
    assert (message.length, message.length_matches) == (9, False)
    assert message.warnings == [
        f"ml: the length field says 9 but the message has {len(text)} characters;"
        " the message is kept (published examples are off by one)"
    ]
    assert (message.lat, message.lon) == (20.2961, 85.8245)


def test_a_length_field_that_is_no_length_is_ignored() -> None:
    message = parse_aml_sms(_v1() + ";ml=123456")
    assert (message.length, message.length_matches) == (None, None)
    assert message.warnings == ["ml: '123456' is not a message length; ignored"]


def test_an_unsupported_version_keeps_the_message() -> None:
    message = parse_aml_sms('A"ML=3;lt=+20.29610;lg=+085.82450')
    assert (message.kind, message.version, message.location) == ("sms", 3, None)
    assert message.location_error == (
        "A\"ML: version '3' is not supported (1 or 2); its location is not read"
    )
    assert message.fields == {"lt": "+20.29610", "lg": "+085.82450"}
    assert message.warnings == []
    assert parse_aml_sms('A"ML=x1;lt=1').version is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty text"),
        ("Please send help to Nayapalli", 'the text does not start with the AML header A"ML='),
        # One past the limit (a concatenated SMS of 1024 characters).
        ((_v1() + ";kl=").ljust(1025, "x"), "1025 characters is too long for an AML SMS"),
    ],
)
def test_text_that_is_not_an_aml_sms_raises(text: str, reason: str) -> None:
    with pytest.raises(AmlError) as caught:
        parse_aml_sms(text)
    assert (caught.value.field, caught.value.reason) == ('A"ML', reason)


def test_an_sms_at_the_size_limit_is_read() -> None:
    message = parse_aml_sms((_v1() + ";kl=").ljust(1024, "x"))
    assert (message.lat, message.lon) == (20.2961, 85.8245)


# v2: et + lt is the fix time; lo carries the position; lz the altitude.
V2 = 'A"ML=2;et=1735727400;lt=-5;lo=20.2961,85.8245,12;ls=W'


def test_a_v2_message_carries_the_fix_time_and_method_into_the_location() -> None:
    message = parse_aml_sms(V2 + ";lz=45.5,3;nc=405853;hc=40486")
    assert message.warnings == []
    assert message.location is not None
    assert message.location.time == datetime(2025, 1, 1, 10, 29, 55, tzinfo=UTC)
    assert message.location.method == "wifi"
    assert (message.altitude_m, message.vertical_accuracy_m) == (45.5, 3.0)
    assert (message.mcc, message.mnc, message.home_mcc, message.home_mnc) == (
        "405",
        "853",
        "404",
        "86",
    )
    assert message.fields["lo"] == "20.2961,85.8245,12"


def test_a_v2_message_without_a_fix_time_has_none() -> None:
    message = parse_aml_sms('A"ML=2;et=1735727400;lo=20.2961,85.8245,12')
    assert message.time is None
    assert message.call_time == datetime(2025, 1, 1, 10, 30, tzinfo=UTC)


def test_a_v2_length_field_is_checked() -> None:
    text = _with_length(V2 + ";ml=")
    message = parse_aml_sms(text)
    assert (message.length, message.length_matches) == (len(text), True)


@pytest.mark.parametrize(
    ("extra", "warning"),
    [
        ("lz=1,2,3", "lz: '1,2,3' is not altitude,vertical accuracy in metres; ignored"),
        ("lz=high,5", "lz: 'high,5' is not altitude,vertical accuracy in metres; ignored"),
        ("nc=4058531", "nc: '4058531' is not MCC and MNC run together (5 or 6 digits); ignored"),
        ("ei=3567080417467", "ei: '3567080417467' is not an IMEI (14 to 16 digits); ignored"),
        (
            "ei=35670804174673412",
            "ei: '35670804174673412' is not an IMEI (14 to 16 digits); ignored",
        ),
    ],
)
def test_a_broken_v2_value_is_named(extra: str, warning: str) -> None:
    message = parse_aml_sms(f"{V2};{extra}")
    assert message.warnings == [warning]
    assert (message.lat, message.lon, message.radius_m) == (20.2961, 85.8245, 12.0)


@pytest.mark.parametrize("ei", ["35670804174673", "3567080417467341"])
def test_v2_imei_lengths(ei: str) -> None:
    assert parse_aml_sms(f"{V2};ei={ei}").imei == ei


@pytest.mark.parametrize(
    ("change", "error", "warnings"),
    [
        ("lo=20.2961,180.5,12", "lo: longitude 180.5 is outside -180..180", []),
        ("lo=20.2961,east,12", "lo: 'east' is not a longitude in decimal degrees", []),
        # A call time after the year 2100 is no time; the fix time goes with it.
        (
            "et=4102444801",
            None,
            [
                "et: 4102444801 is not a plausible Unix time; ignored",
                "lt: location time offset ignored without a call time (et)",
            ],
        ),
    ],
)
def test_a_broken_v2_position_or_time(change: str, error: str | None, warnings: list[str]) -> None:
    key = change.partition("=")[0]
    text = ";".join(change if f.startswith(key + "=") else f for f in V2.split(";"))
    message = parse_aml_sms(text)
    assert message.location_error == error
    assert message.warnings == warnings


def test_the_year_2100_is_still_a_time() -> None:
    message = parse_aml_sms('A"ML=2;et=4102444800;lo=20.2961,85.8245,12')
    assert message.call_time == datetime(2100, 1, 1, tzinfo=UTC)


def test_a_v2_time_offset_that_is_no_number_is_named() -> None:
    message = parse_aml_sms('A"ML=2;et=1735727400;lt=soon;lo=20.2961,85.8245,12')
    assert message.warnings == ["lt: 'soon' is not a time offset in seconds; ignored"]
    assert message.time is None


def test_a_v2_placeholder_position_is_no_location() -> None:
    message = parse_aml_sms('A"ML=2;et=1735727400;lo=0,0,5')
    assert message.location is None
    assert message.location_error == "lo: position 0,0 is a placeholder, not a fix"

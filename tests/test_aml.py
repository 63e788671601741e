"""AML parser: every sample replayed, broken values named, nothing raised but AmlError.

Samples: the suite's own in tests/fixtures/aml (written from ETSI TS 103 625; see its
README), each line with its expected reading; and, when present, the published samples
in ../shared/data/aml as an extra corpus (expectations in EXPECT and HTTPS_FIX below).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.aml.parse import (
    AmlError,
    AmlMessage,
    parse_aml_https,
    parse_aml_query_response,
    parse_aml_sms,
    verify_aml_https_hmac,
)
from tests.conftest import FIXTURES, SHARED_DATA, corpus, needs_shared

AML_DATA = SHARED_DATA / "aml"
LOCAL = FIXTURES / "aml"


def _load(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    lines = path.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


LOCAL_SMS = _load(LOCAL / "sms.jsonl")
LOCAL_HTTPS = _load(LOCAL / "https.jsonl")
SMS_SAMPLES = _load(AML_DATA / "aml_sms_examples.jsonl")
HTTPS_SAMPLES = _load(AML_DATA / "aml_https_examples.jsonl")

PM = {"G": "gps", "W": "wifi", "C": "cell", "N": "none"}


@dataclass(frozen=True)
class Expect:
    """What a non-valid sample must give: a fix (lat, lon, radius in metres) or none,
    and the fields its warnings or location error must name."""

    fix: tuple[float, float, float] | None
    names: tuple[str, ...] = ()


GG = (54.76397, -0.18305, 50.0)
# Every edge and invalid sample of the shared corpus, by id, read off the sample's text.
# A new sample fails test_every_edge_and_invalid_sample_has_an_expectation until it has one.
EXPECT = {
    "gg-invalid-ml": Expect(GG, ("ml",)),
    "gg-unknown-attr": Expect(GG, ("kl",)),
    "gg-bad-top": Expect(GG, ("top",)),
    "gg-bad-pm": Expect(GG, ("pm",)),
    "gg-bad-lat": Expect(None, ("lt",)),
    "gg-bad-lc": Expect(GG, ("lc",)),
    "gg-no-header": Expect(GG, ('A"ML',)),
    "gg-no-lat": Expect(None, ("lt",)),
    "gg-no-pm": Expect(GG),
    "gg-no-imsi": Expect(GG),
    "gg-no-top": Expect(GG),
    "gg-bad-pair": Expect(GG, ("a",)),
    "gg-empty-attrs": Expect(GG),
    "amllib-v1-ml128": Expect((48.82639, -2.36619, 52.0), ("ml",)),
    "php-uk-w-noquote": Expect((54.76397, 0.18305, 50.0), ('A"ML', "ml")),
    "php-uk-g-noquote": Expect((55.74297, -4.26880, 10.0), ('A"ML', "ml")),
}


def _expect(sample: dict[str, Any]) -> Expect:
    """A broken sample's expectation: on its own line (fixtures) or in EXPECT (shared)."""
    if "expect" in sample:
        fix = sample["expect"]["fix"]
        return Expect(tuple(fix) if fix else None, tuple(sample["expect"]["names"]))
    return EXPECT[sample["id"]]


def _samples(local: list[dict[str, Any]], shared: list[dict[str, Any]], keep: Any) -> list[Any]:
    """The fixtures' samples and the extra corpus's (a placeholder when it is absent)."""
    own = [pytest.param(s, id="fixture:" + s["id"]) for s in local if keep(s)]
    return own + corpus([s for s in shared if keep(s)], "aml", ids=lambda s: "shared:" + s["id"])


def _any(sample: dict[str, Any]) -> bool:
    return True


def _valid_v1(sample: dict[str, Any]) -> bool:
    return sample["aml_version"] == 1 and "expected" in sample


def _valid_v2(sample: dict[str, Any]) -> bool:
    return sample["aml_version"] == 2 and sample["kind"] == "valid"


def _broken(sample: dict[str, Any]) -> bool:
    return sample["kind"] != "valid"


def _names(message: AmlMessage, name: str) -> bool:
    """Whether a warning or the location error is about that field."""
    return any(t.startswith(f"{name}:") for t in [*message.warnings, message.location_error or ""])


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_fixtures_have_every_kind_of_sample() -> None:
    """The suite's own corpus covers v1 and v2, valid and broken, SMS and HTTPS."""
    kinds = {(s["aml_version"], s["kind"]) for s in LOCAL_SMS}
    assert {(1, "valid"), (2, "valid"), (1, "edge"), (1, "invalid")} <= kinds
    assert all("expected" in s for s in LOCAL_SMS if s["kind"] == "valid")
    assert all("expect" in s for s in LOCAL_SMS if s["kind"] != "valid")
    assert {s["id"] for s in LOCAL_HTTPS} >= {"in-https-v1", "in-https-hmac", "in-query-response"}


@pytest.mark.parametrize("sample", _samples(LOCAL_SMS, SMS_SAMPLES, _any))
def test_sms_sample_is_read_and_its_length_field_checked(sample: dict[str, Any]) -> None:
    """Every AML SMS is read; ``ml`` is compared with the real length."""
    message = parse_aml_sms(sample["text"])
    assert message.kind == "sms"
    if "warnings" in sample:
        # The fixtures carry the exact text an operator is shown (reviewed by hand).
        assert message.warnings == sample["warnings"]
        assert message.location_error == sample["location_error"]
    assert len(sample["text"]) == sample["actual_length"]
    assert message.length == sample["ml_attribute"]
    assert message.length_matches == sample["ml_matches_length"]
    if sample["ml_matches_length"] is False:
        assert _names(message, "ml"), message.warnings
    json.dumps(message.to_json())


@pytest.mark.parametrize("sample", _samples(LOCAL_SMS, SMS_SAMPLES, _valid_v1))
def test_valid_v1_sample_gives_every_field(sample: dict[str, Any]) -> None:
    """The values stated for valid v1 messages, field by field."""
    expected = sample["expected"]
    message = parse_aml_sms(sample["text"])
    assert message.version == 1
    assert message.location_error is None
    assert message.warnings == []
    assert message.location is not None
    assert (message.lat, message.lon) == (expected["lat"], expected["lon"])
    assert message.radius_m == expected["radius_m"]
    assert message.time == _utc(expected["top_utc"])
    assert message.location.time == message.time
    assert message.positioning_method == PM[expected["pm"]]
    assert message.location.method == PM[expected["pm"]]
    assert message.confidence == expected["lc"]
    assert (message.imsi, message.imei) == (expected["imsi"], expected["imei"])
    assert (message.mcc, message.mnc) == (expected["mcc"], expected["mnc"])
    assert message.length == expected["ml"]


@pytest.mark.parametrize("sample", _samples(LOCAL_SMS, SMS_SAMPLES, _valid_v2))
def test_v2_sample_reads_lo_and_not_lt_lg_as_coordinates(sample: dict[str, Any]) -> None:
    """In v2, ``lt`` is a time offset and ``lg`` a language: the location is ``lo``."""
    expected = sample["expected"]
    message = parse_aml_sms(sample["text"])
    assert message.version == 2
    assert message.warnings == []
    assert (message.lat, message.lon) == (expected["lat"], expected["lon"])
    assert message.radius_m == expected["accuracy_m"]
    call_time = datetime.fromtimestamp(expected["call_start_epoch_s"], tz=UTC)
    assert message.call_time == call_time
    assert message.time is not None
    assert (message.time - call_time).total_seconds() == expected["location_time_offset_s"]
    assert message.positioning_method == PM[expected["source"]]
    assert message.confidence == expected["lc"]
    assert (message.altitude_m, message.vertical_accuracy_m) == (
        expected["altitude_m"],
        expected["vertical_accuracy_m"],
    )
    assert message.imei == expected["imei"]
    assert (message.mcc, message.mnc) == (expected["network_mcc"], expected["network_mnc"])
    assert (message.home_mcc, message.home_mnc) == (expected["home_mcc"], expected["home_mnc"])
    assert message.languages == expected["languages"]
    assert message.emergency_number == expected["emergency_number"]
    assert message.length is None


@needs_shared("aml")
def test_every_edge_and_invalid_sample_has_an_expectation() -> None:
    ids = {s["id"] for s in SMS_SAMPLES if s["kind"] != "valid"}
    assert ids == set(EXPECT)


@pytest.mark.parametrize("sample", _samples(LOCAL_SMS, SMS_SAMPLES, _broken))
def test_broken_sample_keeps_the_message_and_names_the_field(sample: dict[str, Any]) -> None:
    """Nothing in an AML SMS is fatal: broken values are named, location never guessed."""
    expect = _expect(sample)
    message = parse_aml_sms(sample["text"])
    if expect.fix is None:
        assert message.location is None
        assert (message.lat, message.lon, message.radius_m) == (None, None, None)
        assert message.location_error is not None
        assert message.location_error.startswith(expect.names[0] + ":")
    else:
        assert message.location_error is None
        assert (message.lat, message.lon, message.radius_m) == expect.fix
    for name in expect.names:
        assert _names(message, name), (name, message.warnings, message.location_error)
    if not expect.names:
        assert [w for w in message.warnings if not w.startswith("ml:")] in (
            [],
            ["3 empty field(s) between ';' ignored"],
        )


@pytest.mark.parametrize(("source", "prefix"), [("fixture", ""), ("shared", "gg-")])
def test_broken_values_are_left_out_not_guessed(source: str, prefix: str) -> None:
    samples = LOCAL_SMS if source == "fixture" else SMS_SAMPLES
    if source == "shared" and not samples:
        pytest.skip(needs_shared("aml").kwargs["reason"])
    by_id = {s["id"].removeprefix(prefix): parse_aml_sms(s["text"]) for s in samples}
    assert by_id["bad-top"].time is None
    assert by_id["bad-pm"].positioning_method is None
    assert by_id["bad-pm"].location is not None
    assert by_id["bad-pm"].location.method == "unknown"
    assert by_id["bad-lc"].confidence is None
    assert by_id["no-imsi"].imsi is None
    assert by_id["no-header"].version is None
    assert by_id["no-pm"].positioning_method is None
    assert by_id["no-top"].time is None
    bad_lat = next(s["text"] for s in samples if s["id"] == prefix + "bad-lat")
    assert by_id["bad-lat"].fields["lt"] == bad_lat.split("lt=")[1].split(";")[0]
    assert by_id["empty-attrs"].warnings == ["3 empty field(s) between ';' ignored"]


BHUBANESWAR = (
    'A"ML=1;lt=+20.29610;lg=+85.82450;rd=20;top=20250101103000;lc=68;pm=G;'
    "si=405853000000000;ei=356708041746734;mcc=405;mnc=025;ml="
)


def _with_length(text: str) -> str:
    """Append the ml value that makes the length field right."""
    for digits in (1, 2, 3):
        if len(text) + digits == len(text + str(len(text) + digits)):
            return text + str(len(text) + digits)
    raise AssertionError(text)


def test_indian_network_message_keeps_mnc_as_text() -> None:
    message = parse_aml_sms(_with_length(BHUBANESWAR))
    assert message.warnings == []
    assert message.length_matches is True
    assert (message.lat, message.lon, message.radius_m) == (20.2961, 85.8245, 20)
    assert (message.mcc, message.mnc) == ("405", "025")
    assert message.time == datetime(2025, 1, 1, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("replace", "field"),
    [
        # Google's no-fix message: zero-filled coordinates, rd=N, pm=N.
        ({"lt": "+00.00000", "lg": "+000.00000", "rd": "N", "lc": "0", "pm": "N"}, "pm"),
        ({"lt": "+00.00000", "lg": "+000.00000"}, "lt/lg"),
        ({"lt": "+95.00000"}, "lt"),
        ({"lg": "-181.0"}, "lg"),
        ({"lt": "nan"}, "lt"),
        ({"lt": "1_0.5"}, "lt"),
        ({"lt": "\u0662\u0660.\u0662\u0669"}, "lt"),  # Arabic-Indic digits
        ({"lt": ""}, "lt"),
    ],
)
def test_unusable_coordinates_give_no_location(replace: dict[str, str], field: str) -> None:
    """Never a guessed location and never 0,0; the reason names the field."""
    pairs = dict(p.split("=", 1) for p in _with_length(BHUBANESWAR).split(";")[1:])
    pairs.update(replace)
    pairs.pop("ml")
    message = parse_aml_sms('A"ML=1;' + ";".join(f"{k}={v}" for k, v in pairs.items()))
    assert message.location is None
    assert message.location_error is not None
    assert message.location_error.startswith(field + ":"), message.location_error


def test_conflicting_duplicate_coordinate_gives_no_location() -> None:
    message = parse_aml_sms(_with_length(BHUBANESWAR) + ";lt=+20.30000")
    assert message.location is None
    assert message.location_error == "lt: given more than once with different values"


def test_bad_radius_keeps_the_position_with_unknown_uncertainty() -> None:
    message = parse_aml_sms(_with_length(BHUBANESWAR.replace("rd=20", "rd=-5")))
    assert (message.lat, message.lon, message.radius_m) == (20.2961, 85.8245, None)
    assert _names(message, "rd")


def test_unsupported_version_reads_no_location() -> None:
    message = parse_aml_sms(BHUBANESWAR.replace('A"ML=1', 'A"ML=3') + "120")
    assert message.version == 3
    assert message.location is None
    assert message.location_error is not None
    assert message.location_error.startswith('A"ML:')


def test_v2_accuracy_zero_means_unknown() -> None:
    message = parse_aml_sms('A"ML=2;et=1735727400;lo=20.2961,85.8245,0;ls=W')
    assert (message.lat, message.lon, message.radius_m) == (20.2961, 85.8245, None)
    assert message.positioning_method == "wifi"
    assert _names(message, "lo")


@pytest.mark.parametrize(
    "text",
    [
        "Please help, my husband is beating me. Sector 5, Nayapalli",
        "",
        "   ",
        "lt=20.1;lg=85.2",  # coordinates alone are not an AML body
        "ALARM=1;fire",
    ],
)
def test_text_that_is_not_aml_raises_aml_error(text: str) -> None:
    with pytest.raises(AmlError) as caught:
        parse_aml_sms(text)
    assert caught.value.field == 'A"ML'
    assert caught.value.reason


# (lat, lon, accuracy) read off each form body of the shared corpus.
HTTPS_FIX = {
    "amllib-https-v1": (55.85732, -4.26325, 10.4),
    "amllib-https-hmac": (0.85732, -4.26325, 10.4),
    "php-https-v3": (55.85732, -4.26325, 10.4),
}
_SHARED_QUERY = "de-ils-freiburg-query-response"


@needs_shared("aml")
def test_every_https_sample_is_replayed() -> None:
    assert {s["id"] for s in HTTPS_SAMPLES} == {*HTTPS_FIX, _SHARED_QUERY}


def _form(sample: dict[str, Any]) -> bool:
    return sample["body"].startswith("v=") and sample.get("kind") != "broken"


def _https_fix(sample: dict[str, Any]) -> tuple[float, float, float]:
    if sample["id"] in HTTPS_FIX:
        return HTTPS_FIX[sample["id"]]
    e = sample["expected"]
    return (e["lat"], e["lon"], e["accuracy_m"])


@pytest.mark.parametrize("sample", _samples(LOCAL_HTTPS, HTTPS_SAMPLES, _form))
def test_https_sample_is_read(sample: dict[str, Any]) -> None:
    """The HTTPS AML form bodies: Unix-millisecond times, upper-case GPS, empty values."""
    message = parse_aml_https(sample["body"])
    assert message.kind == "https"
    if "warnings" in sample:
        assert (message.warnings, message.location_error) == ([], None)
    assert message.location_error is None
    assert message.warnings == []
    assert (message.lat, message.lon, message.radius_m) == _https_fix(sample)
    expected = sample.get("expected", {})
    assert message.positioning_method == expected.get("source", "GPS").lower()
    assert message.confidence == expected.get("certainty", 83)
    if "location_time_utc" in expected:
        assert message.time == _utc(expected["location_time_utc"])
    if "imei" in expected:
        assert (message.imei, message.imsi) == (expected["imei"], expected["imsi"])
        assert (message.mcc, message.mnc) == (expected["network_mcc"], expected["network_mnc"])
        assert (message.home_mcc, message.home_mnc) == (expected["home_mcc"], expected["home_mnc"])
        assert message.altitude_m == expected["altitude_m"]
        assert message.device_number == expected["device_number"]
    assert message.version == int(sample["body"].split("&")[0].removeprefix("v="))
    assert message.fields.get("cell_carrier", "") == ""


def _signed(sample: dict[str, Any]) -> bool:
    return "hmac_key" in sample.get("expected", {})


@pytest.mark.parametrize("sample", _samples(LOCAL_HTTPS, HTTPS_SAMPLES, _signed))
def test_https_hmac_is_checked_against_the_key(sample: dict[str, Any]) -> None:
    body = sample["body"]
    key = sample["expected"]["hmac_key"]
    lat = str(sample["expected"]["lat"])
    assert verify_aml_https_hmac(body, key) is True
    assert verify_aml_https_hmac(body.encode(), key.encode()) is True
    assert verify_aml_https_hmac(body, "not-the-key") is False
    assert verify_aml_https_hmac(body.replace(lat, lat + "1"), key) is False
    assert verify_aml_https_hmac(body.split("&hmac=")[0], key) is False
    assert verify_aml_https_hmac(body[:-1] + ("0" if body[-1] != "0" else "1"), key) is False


def test_https_broken_latitude_names_the_field() -> None:
    body = "v=1&location_latitude=abc&location_longitude=85.8245&location_accuracy=x"
    message = parse_aml_https(body)
    assert message.location is None
    assert message.location_error is not None
    assert message.location_error.startswith("location_latitude:")
    assert _names(message, "location_accuracy")


def test_https_body_without_aml_fields_raises() -> None:
    with pytest.raises(AmlError) as caught:
        parse_aml_https("name=x&age=3")
    assert caught.value.field == "body"


def _query(sample: dict[str, Any]) -> bool:
    return sample["body"].startswith("[") and sample.get("kind") != "broken"


@pytest.mark.parametrize(
    "sample",
    [pytest.param(s, id=s["id"]) for s in LOCAL_HTTPS if s.get("kind") == "broken"],
)
def test_broken_https_body_keeps_what_it_can_and_names_the_rest(sample: dict[str, Any]) -> None:
    """A broken HTTPS body or query answer: the broken values named, the rest kept, the
    location all or nothing; only what is not AML at all raises."""
    parse = parse_aml_query_response if sample["id"].startswith("query") else parse_aml_https
    if "raises" in sample:
        with pytest.raises(AmlError) as caught:
            parse(sample["body"])
        assert (caught.value.field, caught.value.reason) == (
            sample["raises"]["field"],
            sample["raises"]["reason"],
        )
        return
    message = parse(sample["body"])
    expect = sample["expect"]
    fix = expect["fix"]
    assert (message.lat, message.lon, message.radius_m) == (tuple(fix) if fix else (None,) * 3)
    assert (message.location is None) == (fix is None)
    assert message.warnings == sample["warnings"]
    assert message.location_error == sample["location_error"]
    for name in expect["names"]:
        assert _names(message, name), (name, message.warnings, message.location_error)
    assert message.time == (_utc(expect["time_utc"]) if expect["time_utc"] else None)
    assert message.confidence == expect["confidence"]
    assert message.positioning_method == expect["method"]


@pytest.mark.parametrize("sample", _samples(LOCAL_HTTPS, HTTPS_SAMPLES, _query))
def test_query_response_picks_the_most_accurate_fix(sample: dict[str, Any]) -> None:
    best = sample["expected"]["best_fix"]
    message = parse_aml_query_response(sample["body"])
    if "warnings" in sample:
        assert message.warnings == sample["warnings"]
    assert (message.lat, message.lon, message.radius_m) == (
        best["lat"],
        best["lon"],
        best["accuracy_m"],
    )
    assert message.positioning_method == best["source"]
    # A location_time such as "2019-10-17 09:27:29" has no timezone: not used rather
    # than assumed.
    assert message.time is None
    fixes = json.loads(sample["body"])
    index = best.get("index", 4)
    stamp = fixes[index - 1]["location_time"]
    assert f"fix {index}: location_time: '{stamp}' has no timezone; ignored" in (message.warnings)


def test_query_response_without_data_has_no_location() -> None:
    message = parse_aml_query_response('[{"status": "no aml data"}]')
    assert message.location is None
    assert message.location_error == "fix 1: status: 'no aml data'"


# A near-AML strategy reaches the value checks that random text rarely gets to.
_KEYS = ["lt", "lg", "rd", "top", "lc", "pm", "si", "ei", "mcc", "mnc", "ml", "lo", "et"]
_KEYS += ["lz", "ls", "nc", "hc", "en", "kl", ""]
_VALUES = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"[+-]?[0-9]{1,3}(\.[0-9]{1,6})?", fullmatch=True),
    st.from_regex(r"[0-9]{1,16}", fullmatch=True),
    st.sampled_from(["N", "G", "+00.00000", "1,2,3", "-9999", "nan", "1e400"]),
)
_PAIRS = st.lists(st.tuples(st.sampled_from(_KEYS), _VALUES).map("=".join), max_size=14)
_NEAR_AML = st.tuples(
    st.sampled_from(['A"ML=1', 'A"ML=2', "AML=1", 'A"ML=9', 'A"ML=', ""]), _PAIRS
).map(lambda t: ";".join([t[0], *t[1]]))


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(st.text(), _NEAR_AML))
def test_no_text_makes_the_sms_parser_raise_anything_but_aml_error(text: str) -> None:
    """Whatever arrives by SMS, the parser answers with a message or AmlError."""
    try:
        message = parse_aml_sms(text)
    except AmlError:
        return
    json.dumps(message.to_json())
    if message.location is None:
        assert message.location_error
    else:
        assert (message.lat, message.lon) != (0.0, 0.0)


_FORM_KEYS = ["v", "location_latitude", "location_longitude", "location_time"]
_FORM_KEYS += ["location_accuracy", "location_source", "location_certainty", "hmac"]
_FORM = st.lists(st.tuples(st.sampled_from(_FORM_KEYS), _VALUES).map("=".join), max_size=8)


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.text(), st.binary(), _FORM.map("&".join)))
def test_no_body_makes_the_https_parsers_raise_anything_but_aml_error(
    body: str | bytes,
) -> None:
    for parse in (parse_aml_https, parse_aml_query_response):
        with contextlib.suppress(AmlError):
            parse(body)
    assert verify_aml_https_hmac(body, "key") in (True, False)

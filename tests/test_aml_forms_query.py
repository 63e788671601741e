"""AML query answers: the fields the replayed samples do not carry, read against ETSI TS 103 625.

A query answer: JSON fixes, numbers as numbers or strings, whose times may be epochs or
ISO 8601. Each value is checked as the operator would see it, and each broken value by the
exact warning that names it (a warning an operator reads is part of the behaviour). Values
are placed in Odisha on Indian networks, as the fixtures are. The HTTPS form is in
tests/test_aml_forms_https.py.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from gateways.aml.parse import AmlError, parse_aml_query_response


def _fix(**fields: object) -> dict[str, object]:
    return {"location_latitude": 20.2961, "location_longitude": 85.8245, **fields}


@pytest.mark.parametrize(
    ("location_time", "expected", "warnings"),
    [
        (1735727400500, datetime(2025, 1, 1, 10, 30, 0, 500_000, tzinfo=UTC), []),
        ("1735727400500", datetime(2025, 1, 1, 10, 30, 0, 500_000, tzinfo=UTC), []),
        ("2025-01-01T16:00:00+05:30", datetime(2025, 1, 1, 10, 30, tzinfo=UTC), []),
        ("2025-01-01T10:30:00Z", datetime(2025, 1, 1, 10, 30, tzinfo=UTC), []),
        (
            "2025-01-01 10:30:00",
            None,
            ["fix 1: location_time: '2025-01-01 10:30:00' has no timezone; ignored"],
        ),
        ("yesterday", None, ["fix 1: location_time: 'yesterday' is not a time; ignored"]),
        ("", None, []),
    ],
)
def test_a_query_fix_time_is_an_epoch_or_an_iso_time_with_its_zone(
    location_time: object, expected: datetime | None, warnings: list[str]
) -> None:
    body = json.dumps([_fix(location_accuracy=12, location_time=location_time)])
    message = parse_aml_query_response(body)
    assert message.time == expected
    assert message.warnings == warnings
    assert message.location is not None
    assert message.location.time == expected


def test_a_query_prefers_a_known_accuracy_to_an_unknown_one() -> None:
    body = json.dumps(
        [
            _fix(location_source="gps"),
            _fix(location_latitude=20.30, location_accuracy="150", location_source="cell"),
            _fix(location_latitude=20.31, location_accuracy=60.5, location_source="WIFI"),
        ]
    )
    message = parse_aml_query_response(body.encode())
    assert (message.lat, message.radius_m, message.positioning_method) == (20.31, 60.5, "wifi")
    assert message.fields == {
        "location_latitude": "20.31",
        "location_longitude": "85.8245",
        "location_accuracy": "60.5",
        "location_source": "WIFI",
    }
    assert message.kind == "query-response"
    assert message.version is None
    assert message.warnings == []


def test_a_single_query_fix_may_come_as_an_object() -> None:
    message = parse_aml_query_response(
        '{"location_latitude": "20.2961", "location_longitude": "85.8245", "status": "OK"}'
    )
    assert (message.lat, message.lon, message.radius_m) == (20.2961, 85.8245, None)


@pytest.mark.parametrize(
    ("body", "error", "warnings"),
    [
        (
            '[{"status": "no aml data"}, {"location_latitude": true, "location_longitude": 1}]',
            "fix 1: status: 'no aml data'; fix 2: location_latitude: latitude missing",
            ["fix 1: status: 'no aml data'", "fix 2: location_latitude: latitude missing"],
        ),
        (
            '[{"location_latitude": null, "location_longitude": 85.8}]',
            "fix 1: location_latitude: latitude missing",
            ["fix 1: location_latitude: latitude missing"],
        ),
        (
            '[{"location_latitude": [20.2], "location_longitude": 85.8}]',
            "fix 1: location_latitude: '[20.2]' is not a latitude in decimal degrees",
            ["fix 1: location_latitude: '[20.2]' is not a latitude in decimal degrees"],
        ),
    ],
)
def test_a_query_answer_without_a_usable_fix_says_why(
    body: str, error: str, warnings: list[str]
) -> None:
    message = parse_aml_query_response(body)
    assert message.location is None
    assert message.location_error == error
    assert message.warnings == warnings
    assert message.fields == {}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[]", "not a list of AML fixes"),
        ('"a string"', "not a list of AML fixes"),
        ("[1, 2]", "not a list of AML fixes"),
        ('[{"name": "x"}]', "not a list of AML fixes"),
        (b'[{"status": "ok"}]\xff', "not UTF-8 text"),
    ],
)
def test_what_is_not_a_query_answer_raises(body: str | bytes, reason: str) -> None:
    with pytest.raises(AmlError) as caught:
        parse_aml_query_response(body)
    assert caught.value.field == "body"
    assert caught.value.reason.startswith(reason)


def test_a_bad_status_does_not_hide_the_fixes_after_it() -> None:
    body = json.dumps([{"status": "timeout"}, _fix(location_accuracy=30, status="OK")])
    message = parse_aml_query_response(body)
    assert (message.lat, message.radius_m) == (20.2961, 30.0)
    assert message.warnings == ["fix 1: status: 'timeout'"]


def test_an_accuracy_of_zero_metres_is_the_most_accurate() -> None:
    body = json.dumps(
        [_fix(location_accuracy=0.5), _fix(location_latitude=20.31, location_accuracy=0)]
    )
    message = parse_aml_query_response(body)
    assert (message.lat, message.radius_m) == (20.31, 0.0)


def test_a_nested_value_is_kept_as_json_cut_to_100_characters() -> None:
    device = {"model": "Example Phone", "os": "x" * 200}
    message = parse_aml_query_response(json.dumps([_fix(device=device)]))
    assert message.fields["device"] == json.dumps(device)[:100]


@pytest.mark.parametrize(
    ("fix", "warnings", "error"),
    [
        (
            _fix(location_accuracy="about ten", location_source="sonar"),
            [
                "fix 1: location_source: 'sonar' is not a positioning method"
                " (gps, wifi, cell or unknown); ignored",
                "fix 1: location_accuracy: 'about ten' is not an accuracy in metres; ignored",
            ],
            None,
        ),
        (
            _fix(location_latitude=90.5),
            ["fix 1: location_latitude: latitude 90.5 is outside -90..90"],
            "fix 1: location_latitude: latitude 90.5 is outside -90..90",
        ),
        (
            _fix(location_longitude=180.5),
            ["fix 1: location_longitude: longitude 180.5 is outside -180..180"],
            "fix 1: location_longitude: longitude 180.5 is outside -180..180",
        ),
        (
            _fix(location_longitude="east"),
            ["fix 1: location_longitude: 'east' is not a longitude in decimal degrees"],
            "fix 1: location_longitude: 'east' is not a longitude in decimal degrees",
        ),
        (
            _fix(location_latitude=0, location_longitude=0),
            [
                "fix 1: location_latitude/location_longitude: position 0,0 is a placeholder,"
                " not a fix"
            ],
            "fix 1: location_latitude/location_longitude: position 0,0 is a placeholder, not a fix",
        ),
    ],
)
def test_a_query_fix_names_what_is_wrong_with_it(
    fix: dict[str, object], warnings: list[str], error: str | None
) -> None:
    message = parse_aml_query_response(json.dumps([fix]))
    assert message.kind == "query-response"
    assert message.warnings == warnings
    assert message.location_error == error
    assert (message.location is None) == (error is not None)


def test_a_query_fix_carries_its_method() -> None:
    message = parse_aml_query_response(json.dumps([_fix(location_source="wifi")]))
    assert message.location is not None
    assert message.location.method == "wifi"


def test_a_query_answer_that_is_a_number_is_not_aml() -> None:
    with pytest.raises(AmlError) as caught:
        parse_aml_query_response("5")
    assert caught.value.reason == "not a list of AML fixes"


def test_a_query_time_is_utc_whatever_the_servers_timezone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server in India runs on IST; the time of a fix is still stored as UTC."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        fix = _fix(location_time="2025-01-01T10:30:00+01:00")
        message = parse_aml_query_response(json.dumps([fix]))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert message.time is not None
    assert message.time.isoformat() == "2025-01-01T09:30:00+00:00"

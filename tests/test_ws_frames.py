"""The short path for AVL pings accepts and refuses exactly what the general one does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dispatch.api.ws_frames import MDT_COMMANDS, FrameError, LocationPing, parse_frame

GOOD = [
    {"type": "location", "lat": 20.29, "lon": 85.82},
    {"type": "location", "lat": 20, "lon": 85, "accuracy_m": 8},
    {"type": "location", "lat": 20.29, "lon": 85.82, "accuracy_m": None, "time": None},
    {"type": "location", "lat": 20.29, "lon": 85.82, "time": "2026-12-04T07:26:12Z"},
    {"type": "location", "lat": 20.29, "lon": 85.82, "time": "2026-12-04T07:26:12.123+05:30"},
    # Not the short path's format, still a good ping.
    {"type": "location", "lat": 20.29, "lon": 85.82, "time": "2026-12-04 07:26:12Z"},
    {"type": "location", "lat": 20.29, "lon": 85.82, "extra": {"battery": 80}},
    {"type": "location", "lat": 20.29, "lon": 85.82, "time": 1733300000},
]

BAD = [
    {"type": "location", "lat": "20.29", "lon": 85.82},
    {"type": "location", "lat": True, "lon": 85.82},
    {"type": "location", "lon": 85.82},
    {"type": "location", "lat": 20.29, "lon": 85.82, "accuracy_m": "8"},
    # No offset: the time of a fix must say which clock it is on.
    {"type": "location", "lat": 20.29, "lon": 85.82, "time": "2026-12-04T07:26:12"},
    {"type": "location", "lat": 20.29, "lon": 85.82, "time": "2026-13-04T07:26:12Z"},
    {"type": "location", "lat": 20.29, "lon": 85.82, "note": "a\u0000b"},
]


def general(data: dict[str, Any]) -> LocationPing:
    """What pydantic alone makes of a ping."""
    return LocationPing.model_validate(data)


@pytest.mark.parametrize("data", GOOD, ids=range(len(GOOD)))
def test_a_good_ping_reads_the_same_on_both_paths(data: dict[str, Any]) -> None:
    quick = parse_frame({"text": json.dumps(data)}, MDT_COMMANDS)
    assert isinstance(quick, LocationPing)
    expected = general(data)
    assert (quick.lat, quick.lon, quick.accuracy_m) == (
        expected.lat,
        expected.lon,
        expected.accuracy_m,
    )
    assert quick.time == expected.time
    assert quick.time is None or quick.time.utcoffset() is not None


@pytest.mark.parametrize("data", BAD, ids=range(len(BAD)))
def test_a_bad_ping_is_refused_as_before(data: dict[str, Any]) -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame({"text": json.dumps(data)}, MDT_COMMANDS)
    assert refused.value.code == "invalid_message"


def test_a_huge_integer_is_not_a_crash() -> None:
    """An integer no float can hold goes the general way: an answer, not an exception
    the session would log as a bug."""
    text = '{"type": "location", "lat": 1' + "0" * 400 + ', "lon": 85.8}'
    with pytest.raises(FrameError) as refused:
        parse_frame({"text": text}, MDT_COMMANDS)
    assert refused.value.code == "invalid_message"

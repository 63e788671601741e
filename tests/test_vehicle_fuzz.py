"""The vehicle gateway with arbitrary content: never a 5xx. A JSON alert with its
identity, or a packet that names its device, is taken (202); an emergency's raw bytes
are kept exactly; anything else is a 4xx saying why, and stores nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import LiveServer
from tests.test_gateway_fuzz import _FUZZ, _JSON, _NUMBERS, _TEXT, _TIMES, _check, _encode, _fix
from tests.test_vehicle_packet import IMEI, tracking

ROUTE = "/v1/gateways/vehicle"
_TOKENS = st.sampled_from(
    [
        "EA",
        "TA",
        "WD",
        "NR",
        "HP",
        "EMR",
        "SEM",
        "EPB",
        "LGN",
        "01",
        "02",
        "HBT",
        "L",
        "H",
        "N",
        "S",
        "E",
        "W",
        "A",
        "V",
        "0",
        "1",
        "10",
        "16",
        IMEI,
        "20.2961",
        "85.8245",
        "",
        "04122026",
        "101500",
        "nan",
        "inf",
        "1e400",
        "-999",
        "AIS140",
    ]
)
_ALERTS = st.fixed_dictionaries(
    {"alert_id": _TEXT.filter(lambda s: s.strip()), "imei": st.one_of(_TEXT, st.just(IMEI))},
    optional={
        "registration": st.one_of(_TEXT, _JSON),
        "operator": st.one_of(_TEXT, _JSON),
        "vehicle_type": _JSON,
        "alert_type": st.one_of(
            _TEXT, _JSON, st.sampled_from(["emergency", "tamper", "tracking", "login"])
        ),
        "location": _fix(),
        "speed_kmh": st.one_of(_NUMBERS, _JSON),
        "heading_deg": _NUMBERS,
        "time": _TIMES,
        "raw_packet": st.one_of(_TEXT, _JSON, st.just(tracking("EA", "10"))),
    },
)


def _mutated(replacements: list[tuple[int, str]], code: str) -> str:
    fields = tracking(code, "10").split(",")
    for index, value in replacements:
        fields[index % len(fields)] = value
    return ",".join(fields)


_PACKETS = st.one_of(
    st.lists(st.one_of(_TOKENS, _TEXT), max_size=40).map(lambda f: "$" + ",".join(f) + "*00"),
    # A real packet with some of its fields (the position's most often) replaced.
    st.builds(
        _mutated,
        st.lists(
            st.tuples(st.integers(9, 20) | st.integers(0, 40), st.one_of(_TEXT, _TOKENS)),
            min_size=1,
            max_size=4,
        ),
        st.sampled_from(["EA", "TA", "NR", "HP"]),
    ),
    # A real packet whose position, date and time are anything.
    st.builds(
        lambda code, lat, lon, date, time: tracking(
            code, "10", lat=lat, lon=lon, date=date, time=time
        ),
        st.sampled_from(["EA", "TA", "NR"]),
        *([st.one_of(_TOKENS, _TEXT, _NUMBERS.map(str))] * 4),
    ),
    _TEXT,
)


async def _post(live: LiveServer, body: bytes, media: str) -> httpx.Response:
    headers = live.signed_headers(body, gateway="vehicle")
    headers["Content-Type"] = media
    return await live.http.post(ROUTE, content=body, headers=headers)


async def _check_vehicle(live: LiveServer, response: httpx.Response, body: bytes) -> None:
    assert response.status_code < 500, (response.status_code, response.text, body[:300])
    answer = response.json()
    if response.status_code == 202 and answer["incident_id"] is None:
        assert answer["status"] == "not_an_emergency"
        assert answer["report_id"] is None
        assert isinstance(answer["warnings"], list)
        return
    await _check(live, response, body)


@_FUZZ
@given(alert=_ALERTS)
async def test_fuzzed_alerts_are_taken_or_refused_clearly(
    live: LiveServer, alert: dict[str, Any]
) -> None:
    alert = {**alert, "alert_id": alert["alert_id"] + uuid.uuid4().hex}
    body = _encode(alert)
    response = await _post(live, body, "application/json")
    await _check_vehicle(live, response, body)
    if isinstance(alert["imei"], str) and alert["imei"].strip() and len(alert["imei"]) <= 32:
        # An alert that names its device is never refused for its content.
        assert response.status_code == 202, response.text


@_FUZZ
@given(text=_PACKETS)
async def test_fuzzed_packets_are_taken_or_refused_clearly(live: LiveServer, text: str) -> None:
    body = text.encode("utf-8", "surrogatepass")
    response = await _post(live, body, "text/plain")
    await _check_vehicle(live, response, body)

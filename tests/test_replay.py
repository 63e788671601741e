"""A delivery is known by its channel's own id as well as by its Idempotency-Key.

The key is not signed: a captured request replayed within the clock window under a new
key must get the first answer and create nothing, not a second report (or, once the
first incident is closed, a new incident with a unit sent).
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from typing import Any

from tests.conftest import LiveServer


async def _post(live: LiveServer, path: str, gateway: str, body: bytes, key: str) -> Any:
    return await live.http.post(
        path, content=body, headers=live.signed_headers(body, gateway=gateway, key=key)
    )


async def test_same_body_under_a_new_key_is_the_first_answer(live: LiveServer) -> None:
    body = json.dumps(
        {"trigger_id": "t-replay", "device_id": "d1", "location": {"lat": 20.27, "lon": 85.83}}
    ).encode()
    first = await _post(live, "/v1/gateways/panic", "panic", body, "k1")
    replay = await _post(live, "/v1/gateways/panic", "panic", body, "k2")
    assert first.status_code == 202, first.text
    assert replay.status_code == 202, replay.text
    assert replay.json() == first.json()
    assert await live.count("reports") == 1
    assert await live.count("assignments") == 1


async def test_same_trigger_id_under_a_new_key_creates_nothing(live: LiveServer) -> None:
    first_body = json.dumps(
        {"trigger_id": "t-7", "device_id": "d1", "location": {"lat": 20.27, "lon": 85.83}}
    ).encode()
    other_body = json.dumps(
        {"trigger_id": "t-7", "device_id": "d1", "location": {"lat": 20.28, "lon": 85.84}}
    ).encode()
    first = await _post(live, "/v1/gateways/panic", "panic", first_body, uuid.uuid4().hex)
    again = await _post(live, "/v1/gateways/panic", "panic", other_body, uuid.uuid4().hex)
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    assert await live.count("reports") == 1


async def test_a_replay_after_the_incident_closed_makes_no_new_incident(
    live: LiveServer,
) -> None:
    body = json.dumps(
        {"trigger_id": "t-closed", "device_id": "d9", "location": {"lat": 20.27, "lon": 85.83}}
    ).encode()
    first = await _post(live, "/v1/gateways/panic", "panic", body, "a")
    incident_id = first.json()["incident_id"]
    closed = await live.http.post(
        f"/v1/incidents/{incident_id}/close",
        json={"disposition": "hoax"},
        headers={"Authorization": f"Bearer {live.operator_token}"},
    )
    assert closed.status_code == 200, closed.text
    replay = await _post(live, "/v1/gateways/panic", "panic", body, "b")
    assert replay.json()["incident_id"] == incident_id
    assert await live.count("incidents") == 1
    offered = await live.db.fetchval("SELECT count(*) FROM assignments WHERE status = 'offered'")
    assert offered == 0


async def test_calls_and_sms_are_known_by_their_own_ids(live: LiveServer) -> None:
    call = json.dumps({"call_id": "c-1", "caller": "+919437012345"}).encode()
    sms = json.dumps({"message_id": "m-1", "from": "+919437099999", "text": "help"}).encode()
    for path, gateway, body in (
        ("/v1/gateways/telecom/calls", "telecom", call),
        ("/v1/gateways/sms", "sms", sms),
    ):
        first = await _post(live, path, gateway, body, uuid.uuid4().hex)
        replay = await _post(live, path, gateway, body, uuid.uuid4().hex)
        assert replay.json() == first.json(), path
    assert await live.count("reports") == 2


async def test_aml_over_https_is_known_by_its_body(live: LiveServer) -> None:
    form = urllib.parse.urlencode(
        {
            "v": "3",
            "device_number": "+919437012345",
            "location_latitude": "20.2725",
            "location_longitude": "85.8338",
            "location_accuracy": "12",
            "location_source": "gps",
            "location_time": "1700000000000",
        }
    ).encode()
    first = await _post(live, "/v1/gateways/aml", "sms", form, uuid.uuid4().hex)
    replay = await _post(live, "/v1/gateways/aml", "sms", form, uuid.uuid4().hex)
    assert first.status_code == 202, first.text
    assert replay.json() == first.json()
    assert await live.count("reports") == 1
    raw = await live.db.fetchval("SELECT raw FROM reports")
    assert raw == form


async def test_same_key_with_another_body_is_still_409(live: LiveServer) -> None:
    a = json.dumps({"trigger_id": "x1", "device_id": "d"}).encode()
    b = json.dumps({"trigger_id": "x2", "device_id": "d"}).encode()
    assert (await _post(live, "/v1/gateways/panic", "panic", a, "same")).status_code == 202
    conflict = await _post(live, "/v1/gateways/panic", "panic", b, "same")
    assert conflict.status_code == 409
    assert await live.count("reports") == 1

"""The last line of defence and the outage answer at the gateway.

Intake failing on a report for a bug keeps the report anyway (raw bytes, the error) as
an escalated incident and answers 202; an outage answers 503 with Retry-After and the
one error body, and stores nothing, so the gateway's retry is what delivers it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from dispatch.intake import Intake
from tests.conftest import LiveServer


def _panic() -> dict[str, Any]:
    return {
        "trigger_id": uuid.uuid4().hex,
        "device_id": "dev-" + uuid.uuid4().hex[:8],
        "location": {"lat": 20.2725, "lon": 85.8338, "accuracy_m": 15},
    }


async def _incident(live: LiveServer, incident_id: int) -> dict[str, Any]:
    response = await live.http.get(
        f"/v1/incidents/{incident_id}",
        headers={"Authorization": f"Bearer {live.operator_token}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_bug_in_intake_keeps_the_report_as_an_escalated_incident(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug in the dispatch step")

    monkeypatch.setattr(Intake, "_create_incident", broken)
    trigger = _panic()
    body = json.dumps(trigger).encode()
    key = uuid.uuid4().hex
    response = await live.http.post(
        "/v1/gateways/panic", content=body, headers=live.signed_headers(body, key=key)
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "awaiting_location"
    assert any("intake failed" in w for w in answer["warnings"])
    row = await live.db.fetchrow(
        "SELECT raw, intake_error, sender, external_id FROM reports WHERE id = $1",
        answer["report_id"],
    )
    assert row["raw"] == body
    assert "a bug in the dispatch step" in row["intake_error"]
    assert row["sender"] == trigger["device_id"]
    assert row["external_id"] == trigger["trigger_id"]
    incident = await _incident(live, answer["incident_id"])
    assert incident["escalated"] is True
    assert incident["escalation_reason"].startswith("unprocessable report from gateway panic")
    assert trigger["device_id"] in incident["escalation_reason"]
    assert [e["type"] for e in incident["events"]][:2] == [
        "incident.created",
        "incident.escalated",
    ]
    # The gateway's retry gets the same answer, and nothing more is stored.
    again = await live.http.post(
        "/v1/gateways/panic", content=body, headers=live.signed_headers(body, key=key)
    )
    assert again.json() == answer
    assert await live.count("incidents") == 1


async def test_a_bug_in_an_adapter_keeps_the_bytes(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateways.panic.router as panic_router

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise IndexError("adapter bug")

    monkeypatch.setattr(panic_router, "_BUILD", broken)
    body = json.dumps(_panic()).encode()
    response = await live.http.post(
        "/v1/gateways/panic", content=body, headers=live.signed_headers(body)
    )
    assert response.status_code == 202, response.text
    row = await live.db.fetchrow(
        "SELECT raw, intake_error, sender FROM reports WHERE id = $1",
        response.json()["report_id"],
    )
    assert row["raw"] == body
    assert row["intake_error"] == "IndexError: adapter bug"
    assert row["sender"] == "unknown"
    incident = await _incident(live, response.json()["incident_id"])
    assert incident["type"] == "panic"
    assert incident["escalated"] is True


async def test_an_outage_during_intake_is_503_with_retry_after_and_stores_nothing(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_submit = Intake.submit

    async def unreachable(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(Intake, "submit", unreachable)
    body = json.dumps(_panic()).encode()
    key = uuid.uuid4().hex
    response = await live.http.post(
        "/v1/gateways/panic", content=body, headers=live.signed_headers(body, key=key)
    )
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.headers["connection"] == "close"
    assert response.json()["error"] == "Unavailable"
    assert await live.count("reports") == 0
    # Once the store is back the retry (same key) is the delivery.
    monkeypatch.setattr(Intake, "submit", real_submit)
    retry = await live.http.post(
        "/v1/gateways/panic", content=body, headers=live.signed_headers(body, key=key)
    )
    assert retry.status_code == 202, retry.text
    assert await live.count("reports") == 1


async def test_nul_and_lone_surrogates_are_stored_cleaned_beside_the_exact_bytes(
    live: LiveServer,
) -> None:
    trigger = {**_panic(), "user": {"name": "Asha\u0000\ud800 Das"}, "note": "\x00\x01\x1f"}
    body = json.dumps(trigger).encode()
    response = await live.http.post(
        "/v1/gateways/panic", content=body, headers=live.signed_headers(body)
    )
    assert response.status_code == 202, response.text
    row = await live.db.fetchrow(
        "SELECT raw, payload, intake_error FROM reports WHERE id = $1",
        response.json()["report_id"],
    )
    assert row["intake_error"] is None
    assert row["raw"] == body
    assert row["payload"]["user"]["name"] == "Asha\ufffd\ufffd Das"
    assert row["payload"]["note"] == "\ufffd\x01\x1f"


async def test_unusable_fields_are_dropped_one_by_one_with_warnings(live: LiveServer) -> None:
    trigger = {
        **_panic(),
        "location": {"lat": 20.2725, "lon": 85.8338, "accuracy_m": "15", "time": "10:00"},
        "category": ["medical"],
        "user": {"phone": 9437012345},
    }
    response = await live.post_panic(trigger)
    assert response.status_code == 202, response.text
    warnings = response.json()["warnings"]
    for field in ("location.accuracy_m", "location.time", "category", "user.phone"):
        assert any(w.startswith(field + ":") for w in warnings), (field, warnings)
    incident = await _incident(live, response.json()["incident_id"])
    # The fix itself was usable: the incident is placed, without the dropped radius.
    assert incident["location"]["lat"] == pytest.approx(20.2725)
    assert incident["location"]["radius_m"] is None


async def test_non_finite_coordinates_are_dropped_never_plotted(live: LiveServer) -> None:
    for lat, lon in (("NaN", "85.8"), ("Infinity", "85.8"), ("1e999", "85.8"), ("0", "0")):
        # Written by hand: json.dumps cannot write 1e999, and NaN only as a float.
        location = '{"lat": ' + lat + ', "lon": ' + lon + "}"
        body = (
            '{"trigger_id": "'
            + uuid.uuid4().hex
            + '", "device_id": "d", "location": '
            + location
            + "}"
        ).encode()
        response = await live.http.post(
            "/v1/gateways/panic", content=body, headers=live.signed_headers(body)
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "awaiting_location", (lat, response.json())
        incident = await _incident(live, response.json()["incident_id"])
        assert incident["location"] is None


async def test_a_missing_identity_is_422_naming_the_field(live: LiveServer) -> None:
    response = await live.post_panic({"device_id": "d", "location": {"lat": 20.1, "lon": 85.1}})
    assert response.status_code == 422
    assert "trigger_id" in json.dumps(response.json())
    assert await live.count("reports") == 0

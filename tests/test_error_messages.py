"""Refusals read as sentences a person can act on."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import LiveServer


async def _panic(live: LiveServer) -> int:
    response = await live.post_panic(
        {
            "trigger_id": uuid.uuid4().hex,
            "device_id": uuid.uuid4().hex,
            "location": {"lat": 20.2725, "lon": 85.8338, "accuracy_m": 15},
        }
    )
    assert response.status_code == 202, response.text
    incident_id: int = response.json()["incident_id"]
    return incident_id


async def _post(live: LiveServer, path: str, body: dict[str, Any]) -> Any:
    return await live.http.post(
        path, json=body, headers={"Authorization": f"Bearer {live.operator_token}"}
    )


async def test_acting_on_a_merged_incident_says_why_it_cannot(live: LiveServer) -> None:
    a, b = await _panic(live), await _panic(live)
    assert (await _post(live, f"/v1/incidents/{b}/merge", {"into": a})).status_code == 200
    refused = await _post(live, f"/v1/incidents/{b}/close", {"disposition": "resolved"})
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "InvalidTransition",
        "detail": f"incident {b} is merged, so it cannot be changed",
    }


async def test_a_unit_status_refusal_names_states_in_words(live: LiveServer) -> None:
    unit_id = next(iter(live.credentials["units"]))
    body = {"status": "off_duty", "reason": "end of shift"}
    assert (await _post(live, f"/v1/units/{unit_id}/status", body)).status_code == 200
    refused = await _post(live, f"/v1/units/{unit_id}/status", body)
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == f"unit {unit_id} is off duty, so it cannot be off duty"


async def test_a_query_parameter_given_twice_is_refused_by_name(live: LiveServer) -> None:
    """The framework would keep the last of ?status=a&status=b silently (found by
    schemathesis): every query parameter takes one value, so a repeat is a 422 naming it."""
    response = await live.http.get(
        "/v1/incidents?status=queued&status=closed&limit=5",
        headers={"Authorization": f"Bearer {live.operator_token}"},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "MalformedRequest"
    assert body["fields"] == [
        {
            "loc": ["query", "status"],
            "msg": "given more than once; send it once",
            "type": "repeated",
        }
    ]

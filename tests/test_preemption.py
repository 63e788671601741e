"""Priority 1 may take a unit off a priority-4 job, when configured."""

from __future__ import annotations

import json

import pytest

from dispatch.settings import Settings
from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import panic, zone_point


@pytest.fixture
async def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"preempt_priority": 4})


async def test_panic_takes_the_unit_of_a_noise_complaint(live: LiveServer) -> None:
    await live.db.execute(
        "UPDATE units SET status = 'off_duty' WHERE agency = 'police' AND id <> 'capital-pcr-1'"
    )
    auth = {"Authorization": f"Bearer {live.operator_token}"}
    point = zone_point("capital")
    noise = (await live.post_panic(panic(point, trigger="noise", category="other"))).json()
    async with live.mdt("capital-pcr-1") as mdt, live.console() as console:
        snapshot = json.loads(await mdt.recv())
        await console.recv()
        await mdt.send(
            json.dumps({"type": "accept", "assignment_id": snapshot["assignments"][0]["id"]})
        )
        await receive_until(mdt, lambda m: m["type"] == "ack")
        classified = await live.http.post(
            f"/v1/incidents/{noise['incident_id']}/classify",
            json={"type": "nuisance", "reason": "loud music, nobody hurt"},
            headers=auth,
        )
        assert classified.status_code == 200, classified.text
        assert classified.json()["priority"] == 4

        urgent = (await live.post_panic(panic(point, trigger="sos"))).json()
        assert urgent["status"] == "offered"
        cancelled, _ = await receive_until(mdt, event_of("assignment.cancelled"))
        assert "pre-empted" in cancelled["event"]["data"]["reason"]
        offer, _ = await receive_until(mdt, event_of("assignment.offered"))
        assert offer["event"]["incident_id"] == urgent["incident_id"]
        waiting, _ = await receive_until(
            console, event_of("incident.queued", incident_id=noise["incident_id"])
        )
        assert "pre-empted" in waiting["event"]["data"]["reason"]
    row = await live.db.fetchrow(
        "SELECT status, unfilled FROM incidents WHERE id = $1", noise["incident_id"]
    )
    assert (row["status"], row["unfilled"]) == ("queued", ["police"])


async def test_classify_refuses_an_unknown_type(live: LiveServer) -> None:
    answer = (await live.post_panic(panic(zone_point("capital")))).json()
    response = await live.http.post(
        f"/v1/incidents/{answer['incident_id']}/classify",
        json={"type": "alien landing", "reason": "x"},
        headers={"Authorization": f"Bearer {live.operator_token}"},
    )
    assert response.status_code == 422
    assert "known types" in response.json()["detail"]

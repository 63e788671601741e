"""Invariants 5 and 6: refused offers escalate; waiting incidents get the next free unit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dispatch.settings import Settings
from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import panic, zone_point


@pytest.fixture
async def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_offers": 2})


async def _ack(mdt: Any, message: dict[str, Any]) -> None:
    await mdt.send(json.dumps(message))
    reply, _ = await receive_until(mdt, lambda m: m["type"] in ("ack", "error"))
    assert reply["type"] == "ack", reply


async def test_one_unit_serves_three_incidents_in_priority_order(live: LiveServer) -> None:
    """A unit freeing itself takes the most urgent waiting incident, then the oldest."""
    await live.db.execute("UPDATE units SET status = 'off_duty' WHERE id <> 'capital-pcr-1'")
    point = zone_point("capital")
    ids: dict[str, int] = {}
    async with live.mdt("capital-pcr-1") as mdt:
        await mdt.recv()
        for name, category in (("low", "other"), ("medium", "accident"), ("urgent", None)):
            extra = {"category": category} if category else {}
            answer = (await live.post_panic(panic(point, trigger=name, **extra))).json()
            ids[name] = answer["incident_id"]
        served: list[int] = []
        for _ in range(3):
            offer, _ = await receive_until(mdt, event_of("assignment.offered"), within=10)
            served.append(offer["event"]["incident_id"])
            await _ack(
                mdt, {"type": "accept", "assignment_id": offer["event"]["data"]["assignment_id"]}
            )
            for status in ("on_scene", "available"):
                await _ack(mdt, {"type": "status", "status": status})
    assert served == [ids["low"], ids["urgent"], ids["medium"]]
    priorities = await live.db.fetch("SELECT id, priority FROM incidents ORDER BY id")
    assert [r["priority"] for r in priorities] == [3, 2, 1]


async def test_every_offer_refused_escalates_to_operators(live: LiveServer) -> None:
    """After max_offers declines the incident is escalated and waits in the queue."""
    point = zone_point("khandagiri")
    async with live.console() as console:
        await console.recv()
        incident_id = (await live.post_panic(panic(point))).json()["incident_id"]
        for _ in range(2):
            offer, _ = await receive_until(console, event_of("assignment.offered"))
            unit = offer["event"]["unit_id"]
            async with live.mdt(unit) as mdt:
                snapshot = json.loads(await mdt.recv())
                assert [a["id"] for a in snapshot["assignments"]] == [
                    offer["event"]["data"]["assignment_id"]
                ]
                assignment_id = offer["event"]["data"]["assignment_id"]
                await _ack(mdt, {"type": "decline", "assignment_id": assignment_id})
        escalated, seen = await receive_until(console, event_of("incident.escalated"))
        assert escalated["event"]["incident_id"] == incident_id
        assert "2 offers" in escalated["event"]["data"]["reason"]
        assert not any(m.get("event", {}).get("type") == "assignment.offered" for m in seen)
    # Free units remain, but the queue leaves an escalated incident to operators.
    # A sweep run here (as the background one would) offers it to nobody.
    assert await live.services.queue.sweep_once() == 0
    row = await live.db.fetchrow("SELECT status, escalated FROM incidents")
    assert (row["status"], row["escalated"]) == ("queued", True)
    assert await live.count("assignments") == 2


async def test_by_default_a_panic_never_pre_empts(live: LiveServer) -> None:
    """Pre-emption is off unless configured: the panic waits for a free unit."""
    await live.db.execute(
        "UPDATE units SET status = 'off_duty' WHERE agency = 'police' AND id <> 'capital-pcr-1'"
    )
    point = zone_point("capital")
    await live.post_panic(panic(point, trigger="noise", category="other"))
    urgent = (await live.post_panic(panic(point, trigger="sos"))).json()
    assert urgent["status"] == "queued"

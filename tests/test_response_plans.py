"""One incident, several agencies: each unit of the plan is offered and tracked on its own."""

from __future__ import annotations

import json

from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import panic, zone_point


async def _assignments(live: LiveServer, incident_id: int) -> list[tuple[str, str, str]]:
    rows = await live.db.fetch(
        "SELECT agency, unit_id, status FROM assignments WHERE incident_id = $1 ORDER BY id",
        incident_id,
    )
    return [(r["agency"], r["unit_id"], r["status"]) for r in rows]


async def test_accident_with_injuries_gets_police_and_an_ambulance(live: LiveServer) -> None:
    point = zone_point("jatani")
    answer = (await live.post_panic(panic(point, category="accident_injuries"))).json()
    assert answer["status"] == "offered"
    first = await _assignments(live, answer["incident_id"])
    assert [(agency, status) for agency, _, status in first] == [
        ("police", "offered"),
        ("ambulance", "offered"),
    ]
    police, ambulance = first[0][1], first[1][1]
    assert "-amb-" in ambulance

    async with live.mdt(ambulance) as amb, live.mdt(police) as pcr:
        amb_snapshot = json.loads(await amb.recv())
        pcr_snapshot = json.loads(await pcr.recv())
        await amb.send(
            json.dumps({"type": "accept", "assignment_id": amb_snapshot["assignments"][0]["id"]})
        )
        await receive_until(amb, lambda m: m["type"] == "ack")
        await pcr.send(
            json.dumps({"type": "decline", "assignment_id": pcr_snapshot["assignments"][0]["id"]})
        )
        await receive_until(pcr, lambda m: m["type"] == "ack")

    after = await _assignments(live, answer["incident_id"])
    assert after[:2] == [("police", police, "declined"), ("ambulance", ambulance, "accepted")]
    assert after[2][0] == "police"
    assert after[2][1] != police
    assert after[2][2] == "offered"
    row = await live.db.fetchrow("SELECT status, unfilled FROM incidents")
    assert (row["status"], row["unfilled"]) == ("dispatched", [])


async def test_missing_agency_waits_and_is_filled_when_a_unit_frees(live: LiveServer) -> None:
    """No ambulance free: police go now, the ambulance slot waits in the queue."""
    await live.db.execute("UPDATE units SET status = 'off_duty' WHERE agency = 'ambulance'")
    point = zone_point("chandaka")
    async with live.console() as console:
        await console.recv()
        answer = (await live.post_panic(panic(point, category="accident_injuries"))).json()
        assert answer["status"] == "offered"
        escalated, _ = await receive_until(console, event_of("incident.escalated"))
        assert "ambulance" in escalated["event"]["data"]["reason"]
        row = await live.db.fetchrow("SELECT status, unfilled FROM incidents")
        assert (row["status"], row["unfilled"]) == ("offered", ["ambulance"])
        # The police crew declines: its slot is offered again, but the ambulance slot
        # still has nobody, so the escalation stays.
        police = await live.db.fetchrow("SELECT id, unit_id FROM assignments")
        async with live.mdt(police["unit_id"]) as pcr:
            await pcr.recv()
            await pcr.send(json.dumps({"type": "decline", "assignment_id": police["id"]}))
            await receive_until(pcr, lambda m: m["type"] == "ack")
        await receive_until(console, event_of("assignment.offered"))
        assert await live.db.fetchval("SELECT escalated FROM incidents")

        response = await live.http.post(
            "/v1/units/chandaka-amb-1/status",
            json={"status": "available", "reason": "crew on shift"},
            headers={"Authorization": f"Bearer {live.operator_token}"},
        )
        assert response.status_code == 200
        offer, _ = await receive_until(
            console, event_of("assignment.offered", unit_id="chandaka-amb-1"), within=5
        )
        assert offer["event"]["data"]["agency"] == "ambulance"
        # Every slot has a unit now: the escalation is answered.
        cleared, _ = await receive_until(console, event_of("incident.deescalated"))
        assert "ambulance" in cleared["event"]["data"]["was"]
    assert await live.db.fetchval("SELECT unfilled FROM incidents") == []
    assert await live.db.fetchval("SELECT escalated FROM incidents") is False
    assert (
        await live.db.fetchval("SELECT count(*) FROM events WHERE type = 'incident.deescalated'")
        == 1
    )


async def test_a_refused_offer_with_no_other_unit_escalates_again(live: LiveServer) -> None:
    """The only free ambulance was offered (escalation answered), then declined: with
    no other ambulance, operators are alerted again."""
    await live.db.execute("UPDATE units SET status = 'off_duty' WHERE agency = 'ambulance'")
    answer = (await live.post_panic(panic(zone_point("jatani"), category="medical"))).json()
    incident_id = answer["incident_id"]
    assert answer["status"] == "queued"
    await live.http.post(
        "/v1/units/jatani-amb-1/status",
        json={"status": "available", "reason": "crew on shift"},
        headers={"Authorization": f"Bearer {live.operator_token}"},
    )
    async with live.mdt("jatani-amb-1") as amb:
        await amb.recv()
        offer, _ = await receive_until(amb, event_of("assignment.offered"), within=5)
        assert await live.db.fetchval("SELECT escalated FROM incidents") is False
        decline = {"type": "decline", "assignment_id": offer["event"]["data"]["assignment_id"]}
        await amb.send(json.dumps(decline))
        await receive_until(amb, lambda m: m["type"] == "ack")
    row = await live.db.fetchrow("SELECT escalated, escalation_reason, unfilled FROM incidents")
    assert row["escalated"] is True
    assert "ambulance" in row["escalation_reason"]
    assert row["unfilled"] == ["ambulance"]
    kinds = [
        r["type"]
        for r in await live.db.fetch(
            "SELECT type FROM events WHERE incident_id = $1 AND type LIKE 'incident.%escalated'"
            " ORDER BY id",
            incident_id,
        )
    ]
    assert kinds == ["incident.escalated", "incident.deescalated", "incident.escalated"]

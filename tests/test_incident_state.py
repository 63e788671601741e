"""What operators see of an incident's state at once: a split-off report's location
goes with it, an agency with no unit is waited for and escalated when the plan asks
for it, an incident whose crews have all finished says it is ready to close, a unit's
offer names its incident, and "no unit in reach" says why."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import LiveServer, event_of, receive_until
from tests.test_gateways_telecom_sms import CALLS, post
from tests.test_walking_skeleton import nearest_police_unit, panic, zone_point


def _auth(live: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.operator_token}"}


async def _command(mdt: Any, message: dict[str, Any]) -> dict[str, Any]:
    await mdt.send(json.dumps(message))
    reply, _ = await receive_until(mdt, lambda m: m["type"] in ("ack", "error"))
    return reply


async def test_a_split_off_report_takes_its_location_with_it(live: LiveServer) -> None:
    """The second call's sharper fix moved the incident; split off as another emergency,
    the incident goes back to its own report's fix (and says why)."""
    point = zone_point("laxmisagar")
    first = {
        "call_id": "c-1",
        "caller": "+919437111110",
        "location": {"lat": point.lat, "lon": point.lon, "radius_m": 80.0},
    }
    second = {
        "call_id": "c-2",
        "caller": "+919437111111",
        "location": {"lat": point.lat + 0.0004, "lon": point.lon, "radius_m": 10.0},
    }
    one = (await post(live, CALLS, "telecom", first)).json()
    two = (await post(live, CALLS, "telecom", second)).json()
    assert two["duplicate_of"] == one["incident_id"]
    moved = await live.db.fetchrow(
        "SELECT lat, radius_m FROM incidents WHERE id = $1", one["incident_id"]
    )
    assert (moved["lat"], moved["radius_m"]) == (point.lat + 0.0004, 10.0)

    response = await live.http.post(
        f"/v1/reports/{two['report_id']}/split",
        json={"reason": "another house"},
        headers=_auth(live),
    )
    assert response.status_code == 201, response.text
    old = (await live.http.get(f"/v1/incidents/{one['incident_id']}", headers=_auth(live))).json()
    assert old["location"]["lat"] == point.lat
    assert old["location"]["radius_m"] == 80.0
    relocated = [e for e in old["events"] if e["type"] == "incident.location_updated"][-1]
    assert f"report {two['report_id']} was split off" in relocated["data"]["reason"]
    new = response.json()
    assert new["location"]["radius_m"] == 10.0


async def test_a_split_off_report_that_was_the_only_fix_asks_operators_to_place_it(
    live: LiveServer,
) -> None:
    """The incident's other report has no location: it keeps the one it had, escalated
    with a reason that says what to do."""
    point = zone_point("laxmisagar")
    blank = {"call_id": "c-1", "caller": "+919437111110"}
    located = {
        "call_id": "c-2",
        "caller": "+919437111110",
        "location": {"lat": point.lat, "lon": point.lon, "radius_m": 20.0},
    }
    one = (await post(live, CALLS, "telecom", blank)).json()
    two = (await post(live, CALLS, "telecom", located)).json()
    assert two["duplicate_of"] == one["incident_id"]
    response = await live.http.post(
        f"/v1/reports/{two['report_id']}/split",
        json={"reason": "a different caller on the same phone"},
        headers=_auth(live),
    )
    assert response.status_code == 201, response.text
    row = await live.db.fetchrow(
        "SELECT escalated, escalation_reason FROM incidents WHERE id = $1", one["incident_id"]
    )
    assert row["escalated"] is True
    assert "split off" in row["escalation_reason"]
    assert "place it" in row["escalation_reason"]


async def test_classify_serves_the_new_plan_in_its_answer(live: LiveServer) -> None:
    """A panic classified as an accident with injuries: the answer shows the ambulance
    offer the classification made, beside the police one."""
    answer = (await live.post_panic(panic(zone_point("jatani")))).json()
    response = await live.http.post(
        f"/v1/incidents/{answer['incident_id']}/classify",
        json={"type": "accident_injuries", "reason": "caller: two hurt"},
        headers=_auth(live),
    )
    assert response.status_code == 200, response.text
    offered = {(a["agency"], a["status"]) for a in response.json()["assignments"]}
    assert offered == {("police", "offered"), ("ambulance", "offered")}


async def test_a_plan_agency_with_no_unit_is_waited_for_and_escalated_at_once(
    live: LiveServer,
) -> None:
    """The demo city has no fire units: classified as a fire, the incident says at once
    that it waits for fire and why (not after the police offer expires)."""
    assert not await live.db.fetchval("SELECT count(*) FROM units WHERE agency = 'fire'")
    async with live.console() as console:
        await console.recv()
        answer = (await live.post_panic(panic(zone_point("jatani")))).json()
        await receive_until(console, event_of("assignment.offered"))
        response = await live.http.post(
            f"/v1/incidents/{answer['incident_id']}/classify",
            json={"type": "fire", "reason": "caller: smoke from the kitchen"},
            headers=_auth(live),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["escalated"] is True
        assert body["escalation_reason"] == "no available unit in reach (fire: none free)"
        assert body["waiting_reason"] == body["escalation_reason"]
        assert body["status"] == "offered"  # the police offer stands
        queued, _ = await receive_until(console, event_of("incident.queued"), within=2)
        assert queued["event"]["data"]["waiting_for"] == ["fire"]


async def test_an_incident_whose_crews_have_finished_is_ready_to_close(
    live: LiveServer,
) -> None:
    """The only unit reports available: the incident stays open (an operator closes it,
    with a disposition) and says it is ready to close, live and on reload."""
    point = zone_point("lingaraj")
    unit = await nearest_police_unit(live, "lingaraj", point)
    async with live.mdt(unit) as mdt, live.console() as console:
        await mdt.recv()
        await console.recv()
        incident_id = (await live.post_panic(panic(point))).json()["incident_id"]
        offer, _ = await receive_until(mdt, event_of("assignment.offered"))
        accept = {"type": "accept", "assignment_id": offer["event"]["data"]["assignment_id"]}
        assert (await _command(mdt, accept))["type"] == "ack"
        for status in ("en_route", "on_scene"):
            assert (await _command(mdt, {"type": "status", "status": status}))["type"] == "ack"
        detail = (await live.http.get(f"/v1/incidents/{incident_id}", headers=_auth(live))).json()
        assert detail["ready_to_close"] is False
        assert (await _command(mdt, {"type": "status", "status": "available"}))["type"] == "ack"
        ready, _ = await receive_until(
            console, event_of("incident.ready_to_close", incident_id=incident_id)
        )
        assert unit in ready["event"]["data"]["reason"]
    detail = (await live.http.get(f"/v1/incidents/{incident_id}", headers=_auth(live))).json()
    assert (detail["status"], detail["ready_to_close"]) == ("on_scene", True)


async def test_one_crew_done_of_two_is_not_ready_to_close(live: LiveServer) -> None:
    """Police finished, the ambulance is still on its way: not ready to close."""
    answer = (
        await live.post_panic(panic(zone_point("jatani"), category="accident_injuries"))
    ).json()
    incident_id = answer["incident_id"]
    rows = await live.db.fetch(
        "SELECT id, unit_id, agency FROM assignments WHERE incident_id = $1", incident_id
    )
    by_agency = {r["agency"]: r for r in rows}
    police, ambulance = by_agency["police"], by_agency["ambulance"]
    async with live.mdt(police["unit_id"]) as pcr, live.mdt(ambulance["unit_id"]) as amb:
        await pcr.recv()
        await amb.recv()
        for mdt, row in ((pcr, police), (amb, ambulance)):
            reply = await _command(mdt, {"type": "accept", "assignment_id": row["id"]})
            assert reply["type"] == "ack"
        for status in ("on_scene", "available"):
            assert (await _command(pcr, {"type": "status", "status": status}))["type"] == "ack"
    detail = (await live.http.get(f"/v1/incidents/{incident_id}", headers=_auth(live))).json()
    assert detail["ready_to_close"] is False
    assert not await live.db.fetchval(
        "SELECT count(*) FROM events WHERE type = 'incident.ready_to_close'"
    )


async def test_a_units_offer_names_its_incident(live: LiveServer) -> None:
    """unit.status_changed to 'offered' carries the incident it is offered, as the
    crew's later changes of the same job do."""
    async with live.console() as console:
        await console.recv()
        incident_id = (await live.post_panic(panic(zone_point("jatani")))).json()["incident_id"]
        changed, _ = await receive_until(
            console, lambda m: m.get("event", {}).get("data", {}).get("to") == "offered"
        )
    assert changed["event"]["type"] == "unit.status_changed"
    assert changed["event"]["incident_id"] == incident_id


async def test_no_unit_in_reach_says_the_fleet_is_silent(live: LiveServer) -> None:
    """Every free police unit last reported an hour ago: they are not trusted as
    available, and the escalation says so (not only "no unit in reach")."""
    silent = await live.db.fetchval(
        "WITH s AS (UPDATE units SET position_at = now() - interval '1 hour'"
        " WHERE agency = 'police' AND status = 'available' RETURNING 1) SELECT count(*) FROM s"
    )
    assert silent > 1
    answer = (await live.post_panic(panic(zone_point("jatani")))).json()
    assert answer["status"] == "queued"
    reason = await live.db.fetchval(
        "SELECT escalation_reason FROM incidents WHERE id = $1", answer["incident_id"]
    )
    assert reason == (
        f"no available unit in reach (police: {silent} units sent no position for over 600 s)"
    )

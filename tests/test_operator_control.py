"""Operators steer dispatch over REST; each action is an event consoles see."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import TABLES, panic, rows_written, zone_point


def _auth(live: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.operator_token}"}


async def _post(live: LiveServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return await live.http.post(path, json=body, headers=_auth(live))


async def test_reassign_by_hand_frees_the_first_unit_and_offers_the_chosen_one(
    live: LiveServer,
) -> None:
    point = zone_point("capital")
    answer = (await live.post_panic(panic(point))).json()
    first = await live.db.fetchval("SELECT unit_id FROM assignments")
    chosen = "kharavel-nagar-pcr-1"
    async with live.console() as console, live.mdt(chosen) as mdt:
        await console.recv()
        await mdt.recv()
        response = await _post(
            live,
            f"/v1/incidents/{answer['incident_id']}/assign",
            {"unit_id": chosen, "reason": "closer by road, crew knows the area"},
        )
        assert response.status_code == 200, response.text
        detail = response.json()
        assert [(a["unit_id"], a["status"]) for a in detail["assignments"]] == [
            (first, "cancelled"),
            (chosen, "offered"),
        ]
        cancelled, _ = await receive_until(console, event_of("assignment.cancelled"))
        assert cancelled["event"]["unit_id"] == first
        offer, _ = await receive_until(mdt, event_of("assignment.offered"))
        assert offer["event"]["data"]["tier"] == "manual"
        assert offer["event"]["data"]["reason"] == "closer by road, crew knows the area"
    assert await live.db.fetchval("SELECT status FROM units WHERE id = $1", first) == "available"


async def test_note_close_and_merge(live: LiveServer) -> None:
    point = zone_point("sahidnagar")
    a = (await live.post_panic(panic(point, trigger="a"))).json()["incident_id"]
    b = (await live.post_panic(panic(point, trigger="b"))).json()["incident_id"]
    note = await _post(live, f"/v1/incidents/{a}/notes", {"text": "caller says two injured"})
    assert note.status_code == 201

    merged = await _post(live, f"/v1/incidents/{b}/merge", {"into": a})
    assert merged.status_code == 200, merged.text
    survivor = merged.json()
    assert survivor["id"] == a
    assert sorted(r["external_id"] for r in survivor["reports"]) == ["a", "b"]
    assert "incident.report_attached" in [e["type"] for e in survivor["events"]]
    assert "incident.note_added" in [e["type"] for e in survivor["events"]]
    gone = (await live.http.get(f"/v1/incidents/{b}", headers=_auth(live))).json()
    assert (gone["status"], gone["merged_into"]) == ("merged", a)

    closed = await _post(live, f"/v1/incidents/{a}/close", {"disposition": "resolved on scene"})
    assert closed.status_code == 200
    assert closed.json()["status"] == "closed"
    assert closed.json()["disposition"] == "resolved on scene"
    busy = await live.db.fetchval(
        "SELECT count(*) FROM units WHERE status NOT IN ('available', 'off_duty')"
    )
    assert busy == 0
    again = await _post(live, f"/v1/incidents/{a}/close", {"disposition": "again"})
    assert again.status_code == 409
    assert "closed" in again.json()["detail"]


async def test_unit_out_of_service_is_skipped_by_dispatch(live: LiveServer) -> None:
    for unit in ("badagada-pcr-1", "badagada-pcr-2"):
        response = await _post(
            live, f"/v1/units/{unit}/status", {"status": "out_of_service", "reason": "tyre"}
        )
        assert response.status_code == 200, response.text
    answer = (await live.post_panic(panic(zone_point("badagada")))).json()
    unit = await live.db.fetchval(
        "SELECT unit_id FROM assignments WHERE incident_id = $1", answer["incident_id"]
    )
    assert not unit.startswith("badagada-")


async def test_bad_operator_requests_are_refused_and_change_nothing(live: LiveServer) -> None:
    before = await rows_written(live)
    no_token = await live.http.post("/v1/incidents/1/notes", json={"text": "x"})
    assert no_token.status_code == 401
    wrong = await live.http.post(
        "/v1/incidents/1/notes", json={"text": "x"}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    missing = await _post(live, "/v1/incidents/999/notes", {"text": "x"})
    assert missing.status_code == 404
    empty = await _post(live, "/v1/incidents/999/notes", {"text": ""})
    assert empty.status_code == 422
    extra = await _post(
        live, "/v1/units/capital-pcr-1/status", {"status": "on_scene", "reason": "x"}
    )
    assert extra.status_code == 422
    unknown_unit = await _post(
        live, "/v1/units/nobody/status", {"status": "off_duty", "reason": "x"}
    )
    assert unknown_unit.status_code == 404
    assert await rows_written(live) == before == dict.fromkeys(TABLES, 0)


async def test_cancelling_a_job_the_crew_finishes_meanwhile_is_refused(
    live: LiveServer,
) -> None:
    """The crew's report lands while the operator's cancel waits for the incident's lock:
    the cancel sees the finished job (409), the incident does not go back to the queue,
    and no event is written."""
    point = zone_point("capital")
    async with live.mdt("capital-pcr-1") as mdt, live.mdt("capital-pcr-2") as mdt2:
        await mdt.recv()
        await mdt2.recv()
        incident_id = (await live.post_panic(panic(point))).json()["incident_id"]
    offer_id = await live.db.fetchval(
        "SELECT id FROM assignments WHERE incident_id = $1", incident_id
    )
    async with live.db.acquire() as crew:
        tx = crew.transaction()
        await tx.start()
        await crew.execute("SELECT 1 FROM incidents WHERE id = $1 FOR UPDATE", incident_id)
        cancel = asyncio.create_task(
            _post(live, f"/v1/assignments/{offer_id}/cancel", {"reason": "needed elsewhere"})
        )
        # Until the cancel has read the offer and waits for the incident's lock.
        for _ in range(250):
            if await live.db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%incidents%FOR UPDATE%'"
            ):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the cancel never waited for the incident's lock")
        assert not cancel.done()
        await crew.execute("UPDATE assignments SET status = 'completed' WHERE id = $1", offer_id)
        before = await live.count("events")
        status = await crew.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id)
        await tx.commit()
    answer = await cancel
    assert answer.status_code == 409
    assert "completed" in answer.json()["detail"]
    assert await live.count("events") == before
    after = await live.db.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id)
    assert after == status


async def test_incident_types_are_listed_for_operators(live: LiveServer) -> None:
    """The console's classify list: every configured type, most urgent first, with its
    plan; operators only."""
    assert (await live.http.get("/v1/incident-types")).status_code == 401
    answer = await live.http.get("/v1/incident-types", headers=_auth(live))
    assert answer.status_code == 200
    types = answer.json()
    configured = live.services.dispatcher.incident_types
    assert {t["name"] for t in types} == set(configured)
    assert [t["priority"] for t in types] == sorted(t["priority"] for t in types)
    woman = next(t for t in types if t["name"] == "women_in_distress")
    assert woman["plan"] == ["police"]
    assert woman["needs"] == {"police": ["woman_officer"]}
    injuries = next(t for t in types if t["name"] == "accident_injuries")
    assert injuries["plan"] == ["police", "ambulance"]
    assert injuries["priority"] == 1

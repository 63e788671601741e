"""Edges a review found: each was a 5xx, a lost location, a leak or a retry without end."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest

from dispatch.auth import Gateway
from dispatch.intake import Intake
from dispatch.redact import redact
from dispatch.transient import is_transient
from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import nearest_police_unit, panic, zone_point


def _fix(**extra: Any) -> dict[str, Any]:
    return {"lat": 20.2725, "lon": 85.8338, "accuracy_m": 15, **extra}


@pytest.mark.parametrize(
    ("err", "outage"),
    [
        (asyncpg.InterfaceError("cannot perform operation: connection is closed"), True),
        (
            asyncpg.InterfaceError("the server expects 2 arguments for this query, 1 was passed"),
            False,
        ),
        (
            asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
            False,
        ),
        (asyncpg.exceptions.ReadOnlySQLTransactionError(), True),
        (asyncpg.DeadlockDetectedError(), True),
        (asyncpg.SerializationError(), True),
        (PermissionError("config file"), False),
        (ConnectionRefusedError(), True),
    ],
)
def test_outages_are_told_from_bugs(err: BaseException, outage: bool) -> None:
    assert is_transient(err) is outage


async def test_a_client_side_asyncpg_bug_keeps_the_report_instead_of_503_forever(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def misuse(*_args: Any, **_kwargs: Any) -> Any:
        raise asyncpg.InterfaceError("the server expects 2 arguments for this query, 1 was passed")

    monkeypatch.setattr(Intake, "_create_incident", misuse)
    response = await live.post_panic({"trigger_id": "t", "device_id": "d", "location": _fix()})
    assert response.status_code == 202, response.text
    assert await live.db.fetchval("SELECT intake_error FROM reports") is not None


async def test_deep_content_is_cut_not_refused(live: LiveServer) -> None:
    for depth in (150, 250, 700):
        deep: Any = "x"
        for _ in range(depth):
            deep = {"k": deep}
        trigger = {"trigger_id": uuid.uuid4().hex, "device_id": "d", "location": _fix()}
        trigger["user"] = {"name": "Asha", "meta": deep}
        response = await live.post_panic(trigger)
        assert response.status_code == 202, (depth, response.text)
        answer = response.json()
        assert answer["status"] != "awaiting_location", (depth, answer)
        assert any("nested deeper than" in w for w in answer["warnings"]), answer
        intake_error = await live.db.fetchval(
            "SELECT intake_error FROM reports WHERE id = $1", answer["report_id"]
        )
        assert intake_error is None


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+14:00", "2100-01-01T00:00:00Z"])
async def test_an_impossible_fix_time_loses_the_time_not_the_location(
    live: LiveServer, time: str
) -> None:
    trigger = {"trigger_id": uuid.uuid4().hex, "device_id": "d", "location": _fix(time=time)}
    response = await live.post_panic(trigger)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] != "awaiting_location", answer
    assert any(w.startswith("location.time:") for w in answer["warnings"]), answer
    stored = await live.db.fetchval(
        "SELECT location_time FROM reports WHERE id = $1", answer["report_id"]
    )
    assert stored is None


async def test_a_non_ascii_signature_is_401_not_500(live: LiveServer) -> None:
    body = json.dumps({"trigger_id": "x", "device_id": "y"}).encode()
    headers: dict[str, Any] = live.signed_headers(body)
    headers["X-ERSS-Signature"] = "sha256=\xff".encode("latin-1")
    response = await live.http.post("/v1/gateways/panic", content=body, headers=headers)
    assert response.status_code == 401, response.text


async def test_an_unknown_gateway_is_not_echoed(live: LiveServer) -> None:
    body = b"{}"
    headers = {**live.signed_headers(body), "X-ERSS-Gateway": "<script>probe</script>"}
    response = await live.http.post("/v1/gateways/panic", content=body, headers=headers)
    assert response.status_code == 401
    assert "probe" not in response.text


async def test_aml_with_only_the_callers_number_is_kept(live: LiveServer) -> None:
    form = urlencode({"device_number": "+919437012345", "location_accuracy": "20"}).encode()
    response = await live.http.post(
        "/v1/gateways/aml",
        content=form,
        headers={
            **live.signed_headers(form, gateway="sms"),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "awaiting_location"


def test_secrets_stay_out_of_reprs_and_redacted_text() -> None:
    gateway = Gateway("sms", "sms", ("s3cret-value-123456",), ("aml-key-7",))
    assert "s3cret" not in repr(gateway)
    assert "aml-key" not in repr(gateway)
    for text in (
        "secrets=('abc123',)",
        '"secrets": ["abc123"]',
        '"aml_keys": ["abc123"]',
        "Authorization: Token abc123",
        "token: abc123",
        "apiKey: abc123",
        "tokens=abc123",
    ):
        assert "abc123" not in redact(text), text


async def test_an_mdt_does_not_replay_an_incident_it_declined(live: LiveServer) -> None:
    point = zone_point("badagada")
    unit = await nearest_police_unit(live, "badagada", point)
    async with live.mdt(unit) as mdt:
        await mdt.recv()
        incident_id = (await live.post_panic(panic(point, "declined-1"))).json()["incident_id"]
        offer, _ = await receive_until(mdt, event_of("assignment.offered"))
        assignment = offer["event"]["data"]["assignment_id"]
        await mdt.send(json.dumps({"type": "decline", "assignment_id": assignment}))
        await receive_until(mdt, lambda m: m["type"] == "ack")
    note = await live.http.post(
        f"/v1/incidents/{incident_id}/notes",
        json={"text": "caller: flat 4B"},
        headers={"Authorization": f"Bearer {live.operator_token}"},
    )
    assert note.status_code == 201, note.text
    async with live.mdt(unit, after="0") as mdt:
        replayed: list[dict[str, Any]] = []
        while True:
            message = json.loads(await mdt.recv())
            if message["type"] == "replayed":
                break
            replayed.append(message)
    kinds = [m["event"]["type"] for m in replayed if m["type"] == "event"]
    assert "assignment.offered" in kinds  # its own offer, and its answer, it did see
    assert "incident.note_added" not in kinds, kinds


async def test_a_desk_does_not_learn_other_zones_incident_ids_from_caller_history(
    live: LiveServer,
) -> None:
    phone = "+919437055555"
    south = (
        await live.post_panic(panic(zone_point("capital"), "s-1", user={"phone": phone}))
    ).json()
    closed = await live.http.post(
        f"/v1/incidents/{south['incident_id']}/close",
        json={"disposition": "hoax"},
        headers={"Authorization": f"Bearer {live.operator_token}"},
    )
    assert closed.status_code == 200, closed.text
    desk = {"Authorization": f"Bearer {live.credentials['operators']['north-desk']}"}
    city = {"Authorization": f"Bearer {live.operator_token}"}
    as_desk = (await live.http.get(f"/v1/callers/{phone}", headers=desk)).json()
    as_city = (await live.http.get(f"/v1/callers/{phone}", headers=city)).json()
    assert as_desk["hoaxes"] == as_city["hoaxes"] == 1  # the record matters everywhere
    assert [r["id"] for r in as_desk["recent"]] == [None]
    assert [r["id"] for r in as_city["recent"]] == [south["incident_id"]]
    # A new report in a north zone: its incident.created carries no south id either.
    north = (
        await live.post_panic(panic(zone_point("infocity"), "n-1", user={"phone": phone}))
    ).json()
    created = await live.db.fetchval(
        "SELECT data FROM events WHERE incident_id = $1 AND type = 'incident.created'",
        north["incident_id"],
    )
    recent = created["caller_history"]["recent"]
    assert [r["id"] for r in recent] == [None]
    assert recent[0]["disposition"] == "hoax"

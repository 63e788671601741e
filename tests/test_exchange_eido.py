"""GET /v1/incidents/{id}/eido: every export validates against the shipped NENA-STA-021
schema, carries what the other CAD needs, and nothing it must not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dispatch.exchange import eido_schema
from dispatch.exchange.eido import parse_incident_urn
from gateways.telecom.pidf_lo import parse_pidf_lo
from tests.conftest import LiveServer, receive_until, wait_for
from tests.test_gateways_telecom_sms import CALLS, call, post
from tests.test_walking_skeleton import panic, zone_point

SAMPLE = Path(__file__).parent / "fixtures" / "eido" / "sample_call_transfer.json"


def _auth(live: LiveServer, who: str = "dispatcher") -> dict[str, str]:
    return {"Authorization": f"Bearer {live.credentials['operators'][who]}"}


async def _eido(live: LiveServer, incident_id: int) -> dict[str, Any]:
    response = await live.http.get(f"/v1/incidents/{incident_id}/eido", headers=_auth(live))
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    assert eido_schema.problems(document) == []
    _assert_nothing_secret(live, document)
    return document


def _secrets(credentials: Any) -> list[str]:
    if isinstance(credentials, dict):
        return [s for v in credentials.values() for s in _secrets(v)]
    return [credentials] if isinstance(credentials, str) and len(credentials) >= 16 else []


def _assert_nothing_secret(live: LiveServer, document: dict[str, Any]) -> None:
    text = json.dumps(document)
    for secret in _secrets(live.credentials):
        assert secret not in text
    # Gateway names, raw payloads and device ids mean nothing outside.
    for internal in ('"gateway_id"', '"payload"', "dev-", "token"):
        assert internal not in text


def _location(document: dict[str, Any], kind: str) -> Any:
    found = [
        c for c in document.get("locationComponent", [])
        if c["locationTypeDescriptionRegistryText"] == kind
    ]  # fmt: skip
    return parse_pidf_lo(found[0]["locationByValue"]) if found else None


def test_the_official_sample_validates_and_a_broken_one_is_named() -> None:
    sample = json.loads(SAMPLE.read_text())
    assert eido_schema.problems(sample) == []
    sample["agencyComponent"][0].pop("agencyType")
    del sample["eidoVersion"]
    assert eido_schema.problems(sample) == [
        "(top level): 'eidoVersion' is a required property",
        "agencyComponent/0: 'agencyType' is a required property",
    ]
    with pytest.raises(eido_schema.EidoInvalid):
        eido_schema.check(sample)


async def test_assigned_incident_with_units_notes_and_caller(live: LiveServer) -> None:
    point = zone_point("capital")
    answer = (await post(live, CALLS, "telecom", call(location={
        "lat": point.lat, "lon": point.lon, "radius_m": 40.0, "method": "gps"
    }))).json()  # fmt: skip
    incident_id = answer["incident_id"]
    unit = await wait_for(
        lambda: live.db.fetchval(
            "SELECT unit_id FROM assignments WHERE incident_id = $1", incident_id
        ),
        what="an offer",
    )
    assignment = await live.db.fetchval("SELECT id FROM assignments WHERE unit_id = $1", unit)
    async with live.mdt(unit) as mdt:
        await mdt.recv()
        await mdt.send(json.dumps({"type": "accept", "assignment_id": assignment}))
        await receive_until(mdt, lambda m: m.get("type") == "ack")
    note = await live.http.post(
        f"/v1/incidents/{incident_id}/notes",
        json={"text": "gas smell near the gate"},
        headers=_auth(live),
    )
    assert note.status_code == 201
    document = await _eido(live, incident_id)

    assert parse_incident_urn(document["$id"], live.settings.agency_id) == incident_id
    assert document["issuingElementIdentification"] == live.settings.agency_id
    summary = document["incidentComponent"]
    assert summary["incidentStatusInternalText"] == ["dispatched"]
    incident = _location(document, "Incident")
    assert incident.location.radius_m == pytest.approx(40.0)
    assert incident.method == "GPS"
    assert abs(incident.location.point.lat - point.lat) < 1e-6
    assert [n["notesActionComments"] for n in document["notesComponent"]] == [
        "gas smell near the gate"
    ]
    (callback,) = document["callbackComponent"]
    assert callback["callBackInformationUri"] == ["tel:+919437012345"]
    (resource,) = document["emergencyResourceComponent"]
    callsign = await live.db.fetchval("SELECT callsign FROM units WHERE id = $1", unit)
    assert resource["emergencyResourceName"] == callsign
    assert resource["primaryUnitStatusRegistryText"] == "Dispatched"
    (dispatch,) = document["dispatchComponent"]
    assert dispatch["emergencyResourceReference"] == [{"$ref": resource["$id"]}]
    agencies = {a["$id"]: a for a in document["agencyComponent"]}
    assert agencies[f"police.{live.settings.agency_id}"]["agencyType"] == ["police"]
    # Ids are stable from one export to the next.
    again = await _eido(live, incident_id)
    assert again["emergencyResourceComponent"][0]["$id"] == resource["$id"]


async def test_queued_unlocated_merged_and_closed_incidents(live: LiveServer) -> None:
    await live.db.execute("UPDATE units SET status = 'off_duty'")
    point = zone_point("sahidnagar")
    queued = (await live.post_panic(panic(point, trigger="a"))).json()["incident_id"]
    duplicate = (await live.post_panic(panic(point, trigger="b"))).json()["incident_id"]
    unlocated = (await live.post_panic(panic(None, trigger="c"))).json()["incident_id"]

    document = await _eido(live, queued)
    assert document["incidentComponent"]["incidentStatusInternalText"] == ["queued"]
    assert "emergencyResourceComponent" not in document
    assert "callbackComponent" not in document  # a panic button has no number to ring

    bare = await _eido(live, unlocated)
    assert _location(bare, "Incident") is None
    assert bare["incidentComponent"]["locationReference"] == []

    merged = await live.http.post(
        f"/v1/incidents/{duplicate}/merge", json={"into": queued}, headers=_auth(live)
    )
    assert merged.status_code == 200, merged.text
    survivor = await _eido(live, queued)
    assert survivor["mergeComponent"][0]["incidentMergeDirectionCode"] == "REPLACING"
    assert (
        parse_incident_urn(
            survivor["mergeComponent"][0]["incidentTrackingIdentifier"], live.settings.agency_id
        )
        == duplicate
    )
    assert len(survivor["callComponent"]) == 2
    gone = await _eido(live, duplicate)
    assert gone["mergeComponent"][0]["incidentMergeDirectionCode"] == "REPLACED"
    assert gone["incidentComponent"]["incidentStatusCommonRegistryText"] == ["Closed"]

    closed = await live.http.post(
        f"/v1/incidents/{queued}/close", json={"disposition": "hoax"}, headers=_auth(live)
    )
    assert closed.status_code == 200
    final = await _eido(live, queued)
    (disposition,) = final["incidentComponent"]["dispositionComponent"]
    assert disposition["dispositionCommonRegistryCode"] == "hoax"


async def test_a_desk_gets_only_its_incidents(live: LiveServer) -> None:
    own = (await live.post_panic(panic(zone_point("infocity"), trigger="n"))).json()
    other = (await live.post_panic(panic(zone_point("capital"), trigger="s"))).json()
    desk = _auth(live, "north-desk")
    seen = await live.http.get(f"/v1/incidents/{own['incident_id']}/eido", headers=desk)
    assert seen.status_code == 200
    hidden = await live.http.get(f"/v1/incidents/{other['incident_id']}/eido", headers=desk)
    missing = await live.http.get("/v1/incidents/99999/eido", headers=desk)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"] == missing.json()["error"]
    assert (await live.http.get(f"/v1/incidents/{own['incident_id']}/eido")).status_code == 401

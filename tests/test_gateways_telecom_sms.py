"""Telecom calls and SMS to 112 through a live server: located, unlocated, refused."""

from __future__ import annotations

import json
from typing import Any

import httpx

from dispatch.demo import demo_zones
from geo.points import GeoPoint
from tests.conftest import LiveServer, event_of, receive_until

CALLS = "/v1/gateways/telecom/calls"
SMS = "/v1/gateways/sms"
TABLES = ("incidents", "reports", "assignments", "events", "idempotency_keys")
# Near the Nayapalli police station's jurisdiction in Bhubaneswar.
BHUBANESWAR = GeoPoint(lat=20.2961, lon=85.8245)


def zone_point(zone_id: str) -> GeoPoint:
    """A point well inside a demo zone."""
    zone = next(z for z in demo_zones() if z.id == zone_id)
    return GeoPoint.from_shapely(zone.geometry.representative_point())


async def post(
    live: LiveServer, path: str, gateway: str, body: dict[str, Any] | bytes, **kwargs: Any
) -> httpx.Response:
    """POST a body signed as that gateway."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await live.http.post(
        path, content=raw, headers=live.signed_headers(raw, gateway=gateway, **kwargs)
    )


async def rows_written(live: LiveServer) -> dict[str, int]:
    return {table: await live.count(table) for table in TABLES}


async def incident_row(live: LiveServer, incident_id: int) -> dict[str, Any]:
    row = await live.db.fetchrow(
        "SELECT status, type, priority, lat, lon, radius_m, location_method, zone_id, escalated"
        " FROM incidents WHERE id = $1",
        incident_id,
    )
    assert row is not None
    return dict(row)


async def report_row(live: LiveServer, report_id: int) -> dict[str, Any]:
    row = await live.db.fetchrow(
        "SELECT channel, gateway_id, external_id, sender, lat, lon, radius_m, location_method,"
        " location_time, payload, warnings FROM reports WHERE id = $1",
        report_id,
    )
    assert row is not None
    return dict(row)


def call(call_id: str = "call-1", **extra: Any) -> dict[str, Any]:
    return {"call_id": call_id, "caller": "+919437012345", "tsp": "BSNL", **extra}


PIDF_CIRCLE = f"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:+919437012345@ims.example.in"
    xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"
    xmlns:gml="http://www.opengis.net/gml"
    xmlns:gs="http://www.opengis.net/pidflo/1.0"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:con="urn:ietf:params:xml:ns:geopriv:conf">
  <dm:device id="handset">
    <gp:geopriv>
      <gp:location-info>
        <gs:Circle srsName="urn:ogc:def:crs:EPSG::4326">
          <gml:pos>{BHUBANESWAR.lat} {BHUBANESWAR.lon}</gml:pos>
          <gs:radius uom="urn:ogc:def:uom:EPSG::9001">35</gs:radius>
        </gs:Circle>
        <con:confidence pdf="normal">95</con:confidence>
      </gp:location-info>
      <gp:usage-rules/>
      <gp:method>A-GPS</gp:method>
    </gp:geopriv>
    <dm:timestamp>2025-01-01T10:30:00+05:30</dm:timestamp>
  </dm:device>
</presence>"""


def aml_sms_text(point: GeoPoint) -> str:
    """An AML v1 SMS from an Indian handset, with a length field that is right."""
    text = (
        f'A"ML=1;lt=+{point.lat:.5f};lg=+{point.lon:.5f};rd=12;top=20250101050000;lc=68;'
        "pm=G;si=405853000000000;ei=356708041746734;mcc=405;mnc=853;ml="
    )
    return text + str(len(text) + 3)


async def test_call_with_json_location_in_a_zone_is_offered(live: LiveServer) -> None:
    """Invariant 1: a located call is committed, zoned and offered to a unit."""
    point = zone_point("capital")
    location = {"lat": point.lat, "lon": point.lon, "radius_m": 350.0, "method": "cell"}
    response = await post(
        live,
        CALLS,
        "telecom",
        call(location=location, started_at="2025-01-01T05:00:00Z", call_state="answered"),
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "offered"
    assert answer["warnings"] == []
    assert answer["duplicate_of"] is None
    incident = await incident_row(live, answer["incident_id"])
    assert incident["type"] == "other"
    assert incident["priority"] == 3
    assert incident["zone_id"] == "capital"
    assert (incident["lat"], incident["lon"], incident["radius_m"]) == (
        point.lat,
        point.lon,
        350.0,
    )
    assert incident["location_method"] == "cell"
    report = await report_row(live, answer["report_id"])
    assert (report["channel"], report["gateway_id"]) == ("telecom", "telecom")
    assert (report["external_id"], report["sender"]) == ("call-1", "+919437012345")
    assert report["payload"]["location_source"] == "location"
    assert report["payload"]["call_state"] == "answered"
    assert await live.count("assignments") == 1


async def test_call_with_pidf_lo_circle_in_bhubaneswar_is_located(live: LiveServer) -> None:
    """The PIDF-LO location (lat lon order) places the call in its jurisdiction."""
    response = await post(live, CALLS, "telecom", call(pidf_lo=PIDF_CIRCLE))
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] in ("offered", "queued")
    assert answer["warnings"] == []
    incident = await incident_row(live, answer["incident_id"])
    assert (incident["lat"], incident["lon"], incident["radius_m"]) == (20.2961, 85.8245, 35)
    assert incident["zone_id"] == "nayapalli"
    assert incident["location_method"] == "A-GPS"
    assert incident["escalated"] is False
    report = await report_row(live, answer["report_id"])
    assert report["location_time"].isoformat() == "2025-01-01T05:00:00+00:00"
    assert report["payload"]["location_source"] == "pidf_lo"
    assert report["payload"]["pidf_lo_parsed"]["shape"] == "Circle"
    assert report["payload"]["pidf_lo"] == PIDF_CIRCLE


async def test_call_without_location_awaits_it_and_is_escalated(live: LiveServer) -> None:
    """Invariant 7: no location is no reason to refuse; operators see it at once."""
    async with live.console() as console:
        await console.recv()
        response = await post(live, CALLS, "telecom", call(call_state="answered"))
        assert response.status_code == 202, response.text
        answer = response.json()
        assert answer["status"] == "awaiting_location"
        assert answer["warnings"] == ["location: the call carried no location"]
        escalated, _ = await receive_until(console, event_of("incident.escalated"))
        assert escalated["event"]["incident_id"] == answer["incident_id"]
    incident = await incident_row(live, answer["incident_id"])
    assert (incident["lat"], incident["lon"], incident["zone_id"]) == (None, None, None)
    assert await live.count("assignments") == 0


async def test_call_with_broken_locations_keeps_the_call_and_says_why(live: LiveServer) -> None:
    """An impossible fix and an unreadable PIDF-LO are dropped, never guessed."""
    response = await post(
        live,
        CALLS,
        "telecom",
        call(location={"lat": 0.0, "lon": 0.0, "radius_m": 50.0}, pidf_lo="<presence"),
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "awaiting_location"
    assert answer["warnings"][0] == "location dropped: position 0,0 is a placeholder, not a fix"
    assert answer["warnings"][1].startswith("pidf_lo dropped: not well-formed XML")
    row = await live.db.fetchrow("SELECT lat, lon FROM incidents")
    assert (row["lat"], row["lon"]) == (None, None)


async def test_bad_json_location_falls_back_to_pidf_lo(live: LiveServer) -> None:
    response = await post(
        live, CALLS, "telecom", call(location={"lat": 123.0, "lon": 85.8}, pidf_lo=PIDF_CIRCLE)
    )
    answer = response.json()
    assert answer["status"] in ("offered", "queued")
    assert answer["warnings"][0].startswith("location dropped: latitude outside -90..90")
    incident = await incident_row(live, answer["incident_id"])
    assert incident["zone_id"] == "nayapalli"


async def test_aml_sms_in_bhubaneswar_is_located(live: LiveServer) -> None:
    """An AML SMS is recognised from its text and reported under its sender."""
    message = {
        "message_id": "sms-1",
        "from": "+919437012345",
        "to": "112",
        "text": aml_sms_text(BHUBANESWAR),
        "received_at": "2025-01-01T05:00:03Z",
    }
    response = await post(live, SMS, "sms", message)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] in ("offered", "queued")
    assert answer["warnings"] == []
    incident = await incident_row(live, answer["incident_id"])
    assert (incident["lat"], incident["lon"], incident["radius_m"]) == (20.2961, 85.8245, 12)
    assert incident["zone_id"] == "nayapalli"
    assert incident["location_method"] == "gps"
    assert incident["type"] == "other"
    report = await report_row(live, answer["report_id"])
    assert (report["channel"], report["sender"], report["external_id"]) == (
        "sms",
        "+919437012345",
        "sms-1",
    )
    assert report["payload"]["kind"] == "aml"
    assert report["payload"]["from"] == "+919437012345"
    assert report["payload"]["aml"]["imei"] == "356708041746734"
    assert report["payload"]["aml"]["length_matches"] is True


async def test_aml_sms_with_broken_latitude_keeps_the_message(live: LiveServer) -> None:
    text = aml_sms_text(BHUBANESWAR).replace("lt=+20.29610", "lt=+2O.29610")
    response = await post(
        live, SMS, "sms", {"message_id": "sms-2", "from": "+919437012345", "text": text}
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "awaiting_location"
    assert answer["warnings"] == [
        "AML location dropped: lt: '+2O.29610' is not a latitude in decimal degrees"
    ]


async def test_plain_sms_is_an_incident_without_location(live: LiveServer) -> None:
    """Invariant 7: a text SMS is never refused; its text is kept as the narrative."""
    text = "Help, fight outside Ram Mandir, Unit 3. Please send police"
    response = await post(
        live, SMS, "sms", {"message_id": "sms-3", "from": "+919437012345", "text": text}
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "awaiting_location"
    assert answer["warnings"] == ["plain SMS carries no location"]
    incident = await incident_row(live, answer["incident_id"])
    assert (incident["lat"], incident["type"], incident["escalated"]) == (None, "other", True)
    report = await report_row(live, answer["report_id"])
    assert report["payload"]["kind"] == "plain"
    assert report["payload"]["narrative"] == text
    assert report["warnings"] == ["plain SMS carries no location"]


async def test_sms_retry_returns_the_original_answer(live: LiveServer) -> None:
    """Invariant 1: an SMS gateway retry never makes a second incident."""
    message = {"message_id": "sms-4", "from": "+919437012345", "text": "help"}
    first = await post(live, SMS, "sms", message, key="delivery-4")
    again = await post(live, SMS, "sms", message, key="delivery-4")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert await live.count("incidents") == 1


async def test_malformed_envelopes_get_422_and_write_nothing(live: LiveServer) -> None:
    """Invariant 7: a missing identity or a wrong type is refused with the field named."""
    cases: dict[str, tuple[str, str, bytes, str | None]] = {
        "call not json": (CALLS, "telecom", b"{call", None),
        "call array": (CALLS, "telecom", b"[]", None),
        "no caller": (CALLS, "telecom", json.dumps({"call_id": "c"}).encode(), "caller"),
        "blank caller": (
            CALLS,
            "telecom",
            json.dumps({"call_id": "c", "caller": "  "}).encode(),
            "caller",
        ),
        "no call id": (
            CALLS,
            "telecom",
            json.dumps({"caller": "+919437012345"}).encode(),
            "call_id",
        ),
        "call id as number": (
            CALLS,
            "telecom",
            json.dumps({"call_id": 7, "caller": "+919437012345"}).encode(),
            "call_id",
        ),
        "sms not json": (SMS, "sms", b"not json", None),
        "no from": (SMS, "sms", json.dumps({"message_id": "m", "text": "help"}).encode(), "from"),
        "no message id": (
            SMS,
            "sms",
            json.dumps({"from": "+919437012345", "text": "help"}).encode(),
            "message_id",
        ),
    }
    for name, (path, gateway, body, field) in cases.items():
        response = await post(live, path, gateway, body)
        assert response.status_code == 422, (name, response.text)
        assert response.json()["detail"], name
        detail = response.json()["fields"]
        if field is not None:
            assert any(d["loc"][-1] == field for d in detail), (name, detail)
    assert await rows_written(live) == dict.fromkeys(TABLES, 0)


async def test_unusable_content_is_dropped_with_a_warning_not_refused(live: LiveServer) -> None:
    """Invariant 7: past the envelope, a field of the wrong type loses only itself."""
    cases = {
        "lat as string": (
            CALLS,
            "telecom",
            json.dumps(call(location={"lat": "20.29", "lon": 85.82})).encode(),
            "lat",
        ),
        "pidf_lo as object": (
            CALLS,
            "telecom",
            json.dumps(call("call-2", pidf_lo={"xml": "<presence/>"})).encode(),
            "pidf_lo",
        ),
        "unknown call state": (
            CALLS,
            "telecom",
            json.dumps(call("call-3", call_state="ringing")).encode(),
            "call_state",
        ),
        "text as number": (
            SMS,
            "sms",
            json.dumps({"message_id": "m", "from": "+919437012345", "text": 112}).encode(),
            "text",
        ),
    }
    for name, (path, gateway, body, field) in cases.items():
        response = await post(live, path, gateway, body)
        assert response.status_code == 202, (name, response.text)
        warnings = response.json()["warnings"]
        assert any(w.split(":")[0].split(".")[-1] == field for w in warnings), (name, warnings)


async def test_each_gateway_posts_only_to_its_own_endpoint(live: LiveServer) -> None:
    """A panic or SMS secret cannot post calls: 401 and nothing stored."""
    body = json.dumps(call()).encode()
    for gateway, path in (("sms", CALLS), ("panic", CALLS), ("telecom", SMS)):
        response = await live.http.post(
            path, content=body, headers=live.signed_headers(body, gateway=gateway)
        )
        assert response.status_code == 401, (gateway, path, response.text)
    assert await rows_written(live) == dict.fromkeys(TABLES, 0)

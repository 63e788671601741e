"""The vehicle gateway (AIS-140 panic buttons) end to end: signed HTTP deliveries, JSON
and raw packets, through PostgreSQL, to the operator's REST and the MDT's websocket."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from geo.points import GeoPoint
from tests.conftest import LiveServer, event_of, receive_until, wait_for
from tests.test_vehicle_packet import IMEI, tracking
from tests.test_walking_skeleton import zone_point

ROUTE = "/v1/gateways/vehicle"


def packet(
    code: str,
    alert_id: str,
    point: GeoPoint,
    *,
    ago_s: float = 0.0,
    registration: str = "OD02AB1234",
    imei: str = IMEI,
) -> str:
    """A tracking/alert packet of the demo city, its fix ``ago_s`` seconds old."""
    at = datetime.now(UTC) - timedelta(seconds=ago_s)
    text = tracking(
        code,
        alert_id,
        registration=registration,
        date=at.strftime("%d%m%Y"),
        time=at.strftime("%H%M%S"),
        lat=f"{point.lat:.6f}",
        lon=f"{point.lon:.6f}",
    )
    return text.replace(IMEI, imei)


async def send_packet(live: LiveServer, text: str, key: str | None = None) -> httpx.Response:
    body = text.encode()
    headers = live.signed_headers(body, gateway="vehicle", key=key)
    headers["Content-Type"] = "text/plain"
    return await live.http.post(ROUTE, content=body, headers=headers)


async def send_alert(live: LiveServer, alert: dict[str, Any]) -> httpx.Response:
    body = json.dumps(alert).encode()
    return await live.http.post(
        ROUTE, content=body, headers=live.signed_headers(body, gateway="vehicle")
    )


def operator(live: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.operator_token}"}


async def test_an_emergency_button_is_a_p1_incident_showing_the_vehicle(live: LiveServer) -> None:
    """JSON alert from the tracking backend: a dispatched vehicle_panic incident whose
    detail names the bus and its operator from the register."""
    put = await live.http.put(
        "/v1/vehicles/od-02-ab-1234",
        json={"operator": "Mo Bus (CRUT)", "vehicle_type": "bus"},
        headers=operator(live),
    )
    assert put.status_code == 200, put.text
    point = zone_point("capital")
    alert = {
        "alert_id": "crut-1",
        "imei": IMEI,
        "registration": "OD02AB1234",
        "alert_type": "emergency",
        "location": {"lat": point.lat, "lon": point.lon, "accuracy_m": 8.0},
        "speed_kmh": 32.0,
        "heading_deg": 90.0,
        "time": datetime.now(UTC).isoformat(),
    }
    answer = await send_alert(live, alert)
    assert answer.status_code == 202, answer.text
    result = answer.json()
    assert result["status"] == "offered"
    assert result["duplicate_of"] is None
    detail = (
        await live.http.get(f"/v1/incidents/{result['incident_id']}", headers=operator(live))
    ).json()
    assert (detail["type"], detail["priority"]) == ("vehicle_panic", 1)
    assert detail["vehicle"] == {
        "registration": "OD02AB1234",
        "imei": IMEI,
        "operator": "Mo Bus (CRUT)",
        "vehicle_type": "bus",
        "registered": True,
    }
    # The register learnt the device of the vehicle the operator entered.
    row = await live.db.fetchrow("SELECT imei, operator FROM vehicles")
    assert tuple(row) == (IMEI, "Mo Bus (CRUT)")
    # The same delivery again: the first answer, nothing new.
    again = await send_alert(live, alert)
    assert again.json() == result
    assert await live.count("reports") == 1


async def test_a_raw_emergency_packet_is_an_incident(live: LiveServer) -> None:
    text = packet("EA", "10", zone_point("capital"))
    answer = await send_packet(live, text)
    assert answer.status_code == 202, answer.text
    incident_id = answer.json()["incident_id"]
    row = await live.db.fetchrow(
        "SELECT i.type, i.status, r.raw, r.sender FROM incidents i"
        " JOIN reports r ON r.incident_id = i.id WHERE i.id = $1",
        incident_id,
    )
    assert (row["type"], row["status"]) == ("vehicle_panic", "offered")
    assert row["raw"] == text.encode()
    assert row["sender"] == "OD02AB1234"
    # The register learns the vehicle from the packet alone.
    vehicles = (await live.http.get("/v1/vehicles", headers=operator(live))).json()
    assert [(v["registration"], v["imei"]) for v in vehicles] == [("OD02AB1234", IMEI)]


async def test_login_health_and_tracking_never_make_an_incident(live: LiveServer) -> None:
    point = zone_point("capital")
    deliveries = [
        f"$,01,ACME,2.1.0,{IMEI},OD02AB1234,*00",
        f"$,02,ACME,2.1.0,{IMEI},87,20,03.5,00010,00600,0000,00,00.0,00.0,*11",
        f"$HBT,ACME,{IMEI}*22",
        packet("NR", "01", point),
        packet("IN", "07", point),
        packet("EA", "11", point),  # the button released
    ]
    for text in deliveries:
        answer = await send_packet(live, text)
        assert answer.status_code == 202, answer.text
        assert answer.json()["incident_id"] is None, text
        assert answer.json()["status"] == "not_an_emergency"
    tracking_alert = {"alert_id": "t-1", "imei": IMEI, "alert_type": "tracking"}
    answer = await send_alert(live, tracking_alert)
    assert answer.json()["incident_id"] is None
    assert await live.count("incidents") == 0
    assert await live.count("reports") == 0
    # The login packet named the vehicle.
    assert await live.db.fetchval("SELECT registration FROM vehicles") == "OD02AB1234"


async def test_repeated_alerts_of_one_device_join_one_incident(live: LiveServer) -> None:
    point = zone_point("capital")
    answers = [
        (await send_packet(live, packet("EA", "10", point, ago_s=30 - 10 * n))).json()
        for n in range(3)
    ]
    ids = {a["incident_id"] for a in answers}
    assert len(ids) == 1
    assert [a["duplicate_of"] for a in answers[1:]] == [answers[0]["incident_id"]] * 2
    assert await live.count("incidents") == 1
    assert await live.count("reports") == 3
    # Another bus beside it is another incident: two buses, two emergencies.
    other_bus = packet("EA", "10", point, imei="869999000000001", registration="OD02CD5678")
    other = await send_packet(live, other_bus)
    assert other.json()["incident_id"] not in ids


async def test_a_tamper_alert_waits_for_an_operator(live: LiveServer) -> None:
    """A cut wire is queued and escalated at low priority, and nobody is offered it,
    not even by the queue worker; the same bus's emergency button then dispatches."""
    point = zone_point("capital")
    first = (await send_packet(live, packet("TA", "16", point, ago_s=20))).json()
    assert first["status"] == "queued"
    incident = await live.db.fetchrow(
        "SELECT type, priority, escalated, escalation_reason, unfilled FROM incidents"
        " WHERE id = $1",
        first["incident_id"],
    )
    assert (incident["type"], incident["priority"]) == ("vehicle_tamper", 4)
    assert incident["escalated"]
    assert "tamper" in incident["escalation_reason"]
    assert await live.services.queue.sweep_once() == 0
    assert await live.count("assignments") == 0
    again = (await send_packet(live, packet("WD", "16", point, ago_s=10))).json()
    assert again["duplicate_of"] == first["incident_id"]
    assert await live.count("assignments") == 0
    pressed = (await send_packet(live, packet("EA", "10", point))).json()
    assert pressed["incident_id"] == first["incident_id"]
    assert (
        await live.db.fetchval("SELECT priority FROM incidents WHERE id = $1", first["incident_id"])
        == 1
    )
    live.services.queue.wake()
    await wait_for(lambda: live.count("assignments"), what="an offer for the emergency")


async def test_the_incident_moves_with_the_bus_and_the_mdt_sees_each_fix(
    live: LiveServer,
) -> None:
    """Three tracking fixes of a bus with an open emergency: the incident follows it, and
    the offered unit's MDT (over its websocket) gets each new position, in order."""
    start = zone_point("capital")
    first = (await send_packet(live, packet("EA", "10", start, ago_s=60))).json()
    incident_id = first["incident_id"]
    unit = await live.db.fetchval("SELECT unit_id FROM assignments")
    route = [GeoPoint(lat=start.lat + 0.001 * n, lon=start.lon + 0.0005 * n) for n in (1, 2, 3)]
    async with live.mdt(unit) as mdt, live.console() as console:
        await mdt.recv()
        await console.recv()
        for n, point in enumerate(route):
            answer = await send_packet(live, packet("NR", "01", point, ago_s=40 - 10 * n))
            assert answer.status_code == 202, answer.text
            assert answer.json()["incident_id"] is None
            assert answer.json()["moved_incident"] == incident_id
        for ws in (mdt, console):
            for point in route:
                moved, _ = await receive_until(
                    ws, event_of("incident.location_updated", incident_id=incident_id)
                )
                location = moved["event"]["data"]["location"]
                assert (location["lat"], location["lon"]) == (
                    round(point.lat, 6),
                    round(point.lon, 6),
                )
    row = await live.db.fetchrow("SELECT lat, lon FROM incidents WHERE id = $1", incident_id)
    assert (row["lat"], row["lon"]) == (round(route[-1].lat, 6), round(route[-1].lon, 6))
    # An older fix, sent late, does not move it back.
    late = await send_packet(live, packet("NR", "01", start, ago_s=50))
    assert late.json()["moved_incident"] is None


async def test_bad_deliveries_are_refused_with_the_reason(live: LiveServer) -> None:
    unreadable = await send_packet(live, "$,NRM,ACME,NR,01,L,12345,*00")
    assert unreadable.status_code == 422
    assert "IMEI" in unreadable.json()["fields"][0]["msg"]
    no_imei = await send_alert(live, {"alert_id": "x", "alert_type": "emergency"})
    assert no_imei.status_code == 422
    body = packet("EA", "10", zone_point("capital")).encode()
    forged = live.signed_headers(body, gateway="vehicle", secret="not-the-secret-at-all")
    assert (await live.http.post(ROUTE, content=body, headers=forged)).status_code == 401
    as_panic = live.signed_headers(body, gateway="panic")
    assert (await live.http.post(ROUTE, content=body, headers=as_panic)).status_code == 401
    assert await live.count("incidents") == 0

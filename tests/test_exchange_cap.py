"""CAP 1.2 public alerts: every alert issued, updated or cancelled validates against the
shipped XSD; the Atom feed lists exactly the alerts in force; nothing secret leaks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from dispatch.exchange import cap_schema
from dispatch.exchange.cap import CAP, AlertSpec, Area, Circle, build_alert, cap_time
from tests.conftest import LiveServer
from tests.test_walking_skeleton import panic, zone_point

FIXTURES = Path(__file__).parent / "fixtures" / "cap"
ATOM = "{http://www.w3.org/2005/Atom}"
POLYGON = [[20.30, 85.82], [20.30, 85.86], [20.27, 85.86], [20.27, 85.82]]


def _auth(live: LiveServer, who: str = "dispatcher") -> dict[str, str]:
    return {"Authorization": f"Bearer {live.credentials['operators'][who]}"}


def _body(**extra: Any) -> dict[str, Any]:
    return {
        "event": "Gas leak",
        "headline": "Gas leak at Saheed Nagar: stay indoors",
        "instruction": "Close windows, do not light flames.",
        "urgency": "Immediate",
        "severity": "Severe",
        "certainty": "Observed",
        "categories": ["Safety", "CBRNE"],
        "area": {"description": "Saheed Nagar", "polygon": POLYGON},
        **extra,
    }


def _secrets(credentials: Any) -> list[str]:
    if isinstance(credentials, dict):
        return [s for v in credentials.values() for s in _secrets(v)]
    return [credentials] if isinstance(credentials, str) and len(credentials) >= 16 else []


async def _cap(live: LiveServer, url: str) -> etree._Element:
    """Fetch a public alert (no token), check it against the XSD and for secrets."""
    response = await live.http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/cap+xml")
    assert cap_schema.problems(response.content) == []
    for secret in _secrets(live.credentials):
        assert secret not in response.text
    for operator in live.credentials["operators"]:
        assert operator not in response.text
    return etree.fromstring(response.content)


def _text(alert: etree._Element, path: str) -> str | None:
    found = alert.find(path.replace("cap:", f"{{{CAP}}}"))
    return found.text if found is not None else None


async def _feed(live: LiveServer) -> list[str]:
    """The feed's entries' alert URLs (public, no token)."""
    response = await live.http.get("/v1/cap/feed")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = etree.fromstring(response.content)
    assert feed.tag == f"{ATOM}feed"
    return [
        entry.find(f"{ATOM}link").get("href")  # type: ignore[union-attr]
        for entry in feed.findall(f"{ATOM}entry")
    ]


def test_the_schema_tells_valid_from_invalid_alerts() -> None:
    for name in ("thunderstorm.cap", "canada.cap"):
        assert cap_schema.problems((FIXTURES / name).read_bytes()) == []
    (problem,) = cap_schema.problems((FIXTURES / "invalid.cap").read_bytes())
    assert "info" in problem
    assert "scope" in problem
    assert cap_schema.problems(b"<alert") != []


def test_cap_times_have_an_offset_and_whole_seconds() -> None:
    moment = datetime(2026, 12, 4, 7, 15, 30, 123456, tzinfo=UTC)
    assert cap_time(moment) == "2026-12-04T12:45:30+05:30"
    spec = AlertSpec(
        event="Flood",
        headline="h",
        urgency="Expected",
        severity="Moderate",
        certainty="Likely",
        categories=("Met",),
        area=Area("riverbank", circle=Circle(20.3, 85.8, 2.5)),
    )
    xml = build_alert(
        identifier="x.alert.1",
        sender="x",
        sender_name="X",
        sent=moment,
        expires=moment + timedelta(hours=2),
        msg_type="Alert",
        spec=spec,
    )
    assert cap_schema.problems(xml) == []
    alert = etree.fromstring(xml.encode())
    assert _text(alert, "cap:info/cap:area/cap:circle") == "20.300000,85.800000 2.5"
    ring = _text(alert, "cap:info/cap:area/cap:polygon")
    assert ring is not None
    assert ring.split()[0] == ring.split()[-1]


async def test_issue_update_cancel_and_the_feed(live: LiveServer) -> None:
    issued = await live.http.post("/v1/alerts", json=_body(), headers=_auth(live))
    assert issued.status_code == 201, issued.text
    first = issued.json()
    alert = await _cap(live, first["url"])
    assert _text(alert, "cap:msgType") == "Alert"
    assert _text(alert, "cap:sender") == live.settings.agency_id
    assert _text(alert, "cap:sent").endswith("+05:30")  # type: ignore[union-attr]
    polygon = _text(alert, "cap:info/cap:area/cap:polygon")
    assert polygon is not None
    assert polygon.split()[0] == polygon.split()[-1] == "20.300000,85.820000"
    assert await _feed(live) == [first["url"]]

    updated = await live.http.post(
        f"/v1/alerts/{first['identifier']}/update",
        json=_body(headline="Gas leak contained: keep windows closed", severity="Moderate"),
        headers=_auth(live),
    )
    assert updated.status_code == 201, updated.text
    second = updated.json()
    update = await _cap(live, second["url"])
    assert _text(update, "cap:msgType") == "Update"
    assert f",{first['identifier']}," in _text(update, "cap:references")  # type: ignore[operator]
    assert await _feed(live) == [second["url"]]
    # The replaced alert stays at its URL, as issued.
    assert _text(await _cap(live, first["url"]), "cap:msgType") == "Alert"
    again = await live.http.post(
        f"/v1/alerts/{first['identifier']}/update", json=_body(), headers=_auth(live)
    )
    assert again.status_code == 409

    cancelled = await live.http.post(
        f"/v1/alerts/{second['identifier']}/cancel",
        json={"reason": "all clear"},
        headers=_auth(live),
    )
    assert cancelled.status_code == 201, cancelled.text
    cancel = await _cap(live, cancelled.json()["url"])
    assert _text(cancel, "cap:msgType") == "Cancel"
    assert _text(cancel, "cap:note") == "all clear"
    references = _text(cancel, "cap:references") or ""
    assert first["identifier"] in references
    assert second["identifier"] in references
    assert await _feed(live) == [cancelled.json()["url"]]
    listed = await live.http.get("/v1/alerts", headers=_auth(live))
    assert [a["msg_type"] for a in listed.json()] == ["Cancel"]
    cancel_twice = await live.http.post(
        f"/v1/alerts/{cancelled.json()['identifier']}/cancel",
        json={"reason": "x"},
        headers=_auth(live),
    )
    assert cancel_twice.status_code == 409


async def test_expired_alerts_leave_the_feed(live: LiveServer) -> None:
    short = (await live.http.post("/v1/alerts", json=_body(), headers=_auth(live))).json()
    long = (
        await live.http.post("/v1/alerts", json=_body(expires_in_min=600), headers=_auth(live))
    ).json()
    assert sorted(await _feed(live)) == sorted([short["url"], long["url"]])
    # Time passes for the first one (an hour is long for a test to wait).
    await live.db.execute(
        "UPDATE alerts SET expires_at = now() - interval '1 second' WHERE identifier = $1",
        short["identifier"],
    )
    assert await _feed(live) == [long["url"]]
    await _cap(live, short["url"])  # still at its own URL


async def test_an_alert_around_an_incident_covers_its_uncertainty(live: LiveServer) -> None:
    point = zone_point("capital")
    body = panic(point, trigger="g")
    body["location"]["accuracy_m"] = 2500.0
    incident_id = (await live.post_panic(body)).json()["incident_id"]
    around = await live.http.post(
        "/v1/alerts",
        json=_body(incident_id=incident_id, area={"description": "around the fire"}),
        headers=_auth(live),
    )
    assert around.status_code == 201, around.text
    alert = await _cap(live, around.json()["url"])
    circle = _text(alert, "cap:info/cap:area/cap:circle") or ""
    assert circle.endswith(" 2.5")
    # The public learns where and what, not our incident's number.
    assert _text(alert, "cap:incidents") is None
    assert "incidentid" not in etree.tostring(alert).decode()
    # A desk cannot alert around another zone's incident.
    desk = await live.http.post(
        "/v1/alerts",
        json=_body(incident_id=incident_id, area={"description": "x"}),
        headers=_auth(live, "north-desk"),
    )
    assert desk.status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"area": {"description": "nowhere"}}, "area"),
        ({"area": {"description": "x", "polygon": POLYGON, "circle": {
            "lat": 20.3, "lon": 85.8, "radius_km": 1}}}, "polygon"),
        ({"area": {"description": "x", "polygon": [[20.3, 85.8], [20.3, 85.8], [1, 2]]}},
         "distinct"),
        ({"urgency": "Now"}, "urgency"),
        ({"categories": []}, "categories"),
        ({"headline": "x\u0000y"}, "headline"),
    ],
)  # fmt: skip
async def test_bad_alerts_are_refused_and_nothing_is_issued(
    live: LiveServer, change: dict[str, Any], field: str
) -> None:
    response = await live.http.post("/v1/alerts", json=_body(**change), headers=_auth(live))
    assert response.status_code == 422, response.text
    assert field in response.text
    assert await live.count("alerts") == 0
    assert (await live.http.post("/v1/alerts", json=_body())).status_code == 401

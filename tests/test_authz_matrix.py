"""Every operator route against every kind of caller: no token, a wrong token, a unit's
MDT token, a SHOUT volunteer's token, a desk acting on another zone, a desk on its own
zone, a city-wide operator.

The routes come from the app's own OpenAPI document (every operation secured by the
operator token), so a new operator route without a row here fails. For each route the
refused callers change nothing (read back from PostgreSQL) and the allowed ones take
effect. The rule is dispatch/access.py; docs/api.md "Who sees what".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from dispatch import access, readmodels
from dispatch.app import create_app
from dispatch.auth import Principal
from dispatch.exchange.agencies import Agency
from dispatch.settings import Settings
from dispatch.volunteers import alerts as volunteer_alerts
from dispatch.volunteers import store as volunteer_store
from dispatch.volunteers.decide import Pick
from tests.conftest import LiveServer
from tests.test_gateways_telecom_sms import CALLS, post
from tests.test_walking_skeleton import panic, zone_point

OWN_ZONE = "infocity"  # on the north desk
OTHER_ZONE = "capital"  # not on it
DESK = "north-desk"
CITY = "dispatcher"
DESK_ZONES = {"chandaka", "chandrasekharpur", "infocity", "mancheswar", "nandankanan"}


def _operator_routes() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation the served document secures by operator token."""
    app = create_app(Settings(database_url="postgresql://unused/x", redis_url="redis://unused"))
    routes = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if any("OperatorToken" in s for s in operation.get("security", [])):
                routes.append((method.upper(), path))
    return sorted(routes)


OPERATOR_ROUTES = _operator_routes()


@dataclass
class Call:
    """One request against one target, and how to read back what it would change."""

    path: str
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    state: Callable[[], Awaitable[Any]] | None = None  # None: a read, nothing to change
    marker: int | str | None = None  # for a list: an item that must (or must not) be in it


Prepare = Callable[[LiveServer, str, str], Awaitable[Call]]


@dataclass(frozen=True)
class Row:
    """How to exercise one route: ``prepare`` builds a target in a zone; ``kind`` says
    what a desk gets for another zone's target: ``target`` (404), ``list`` (200,
    filtered) or ``reference`` (200, the same for everyone)."""

    prepare: Prepare
    kind: str = "target"
    check_list: Callable[[LiveServer, Call, Call, str, Any], Awaitable[None]] | None = None


async def _incident(live: LiveServer, zone: str, tag: str, **extra: Any) -> int:
    answer = await live.post_panic(panic(zone_point(zone), trigger=tag, **extra))
    assert answer.status_code == 202, answer.text
    incident_id: int = answer.json()["incident_id"]
    return incident_id


async def _incident_state(live: LiveServer, incident_id: int) -> dict[str, Any]:
    row = await live.db.fetchrow(
        "SELECT status, type, location_method, merged_into, disposition FROM incidents"
        " WHERE id = $1",
        incident_id,
    )
    events = await live.db.fetchval(
        "SELECT count(*) FROM events WHERE incident_id = $1", incident_id
    )
    assignments = await live.db.fetch(
        "SELECT id, unit_id, status FROM assignments WHERE incident_id = $1 ORDER BY id",
        incident_id,
    )
    reports = await live.db.fetchval(
        "SELECT count(*) FROM reports WHERE incident_id = $1", incident_id
    )
    return {
        **dict(row),
        "events": events,
        "reports": reports,
        "assignments": [tuple(a) for a in assignments],
    }


def _watch(live: LiveServer, *incident_ids: int) -> Callable[[], Awaitable[Any]]:
    async def state() -> Any:
        return [await _incident_state(live, i) for i in incident_ids]

    return state


# --- one preparation per route -------------------------------------------------------


async def _read_incident(live: LiveServer, zone: str, tag: str) -> Call:
    return Call(f"/v1/incidents/{await _incident(live, zone, tag)}")


async def _list_incidents(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)
    return Call("/v1/incidents", params={"limit": "1000"}, marker=incident_id)


async def _check_incident_list(
    live: LiveServer, own: Call, other: Call, who: str, answer: Any
) -> None:
    ids = {i["id"] for i in answer}
    assert own.marker in ids, who
    if who == DESK:
        assert other.marker not in ids
        assert {i["zone"]["id"] for i in answer if i["zone"]} <= DESK_ZONES
    else:
        assert other.marker in ids


async def _list_units(live: LiveServer, zone: str, tag: str) -> Call:
    return Call("/v1/units")


async def _check_unit_list(live: LiveServer, own: Call, other: Call, who: str, answer: Any) -> None:
    zones = {u["zone_id"] for u in answer}
    assert OWN_ZONE in zones, who
    if who == DESK:
        assert zones <= DESK_ZONES
    else:
        assert OTHER_ZONE in zones
        assert len(answer) == await live.count("units")


async def _assign(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)
    unit_id = await live.db.fetchval(
        "SELECT id FROM units WHERE zone_id = $1 AND agency = 'police' AND status = 'available'"
        " ORDER BY id LIMIT 1",
        zone,
    )
    assert unit_id is not None
    return Call(
        f"/v1/incidents/{incident_id}/assign",
        {"unit_id": unit_id, "reason": "closer"},
        state=_watch(live, incident_id),
    )


async def _cancel(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)
    assignment_id = await live.db.fetchval(
        "SELECT id FROM assignments WHERE incident_id = $1 AND status = 'offered'", incident_id
    )
    assert assignment_id is not None, "the panic was offered to a unit"
    return Call(
        f"/v1/assignments/{assignment_id}/cancel",
        {"reason": "needed elsewhere"},
        state=_watch(live, incident_id),
    )


async def _split(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)
    again = await _incident(live, zone, tag + "-again", device_id=f"dev-{tag}")
    assert again == incident_id, "a device's second trigger joins its incident"
    report_id = await live.db.fetchval(
        "SELECT max(id) FROM reports WHERE incident_id = $1", incident_id
    )
    return Call(
        f"/v1/reports/{report_id}/split",
        {"reason": "another caller"},
        state=_watch(live, incident_id),
    )


async def _place(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)
    point = zone_point(zone)
    return Call(
        f"/v1/incidents/{incident_id}/location",
        {"lat": point.lat, "lon": point.lon, "radius_m": 40.0, "reason": "caller's words"},
        state=_watch(live, incident_id),
    )


async def _confirm(live: LiveServer, zone: str, tag: str) -> Call:
    point = zone_point(zone)
    silent = {
        "call_id": f"s-{tag}",
        "caller": "+91943800010" + ("1" if zone == OWN_ZONE else "2"),
        "call_state": "silent",
        "location": {"lat": point.lat, "lon": point.lon, "radius_m": 300.0},
    }
    answer = (await post(live, CALLS, "telecom", silent)).json()
    assert answer["status"] == "callback", answer
    incident_id = answer["incident_id"]
    return Call(
        f"/v1/incidents/{incident_id}/confirm",
        {"reason": "called back: a fight"},
        state=_watch(live, incident_id),
    )


async def _note(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)
    return Call(
        f"/v1/incidents/{incident_id}/notes",
        {"text": "caller hung up"},
        state=_watch(live, incident_id),
    )


async def _classify(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)
    kind = next(k for k in live.services.dispatcher.incident_types if k != "panic")
    return Call(
        f"/v1/incidents/{incident_id}/classify",
        {"type": kind, "reason": "caller said so"},
        state=_watch(live, incident_id),
    )


async def _close(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)
    return Call(
        f"/v1/incidents/{incident_id}/close",
        {"disposition": "resolved"},
        state=_watch(live, incident_id),
    )


async def _merge(live: LiveServer, zone: str, tag: str) -> Call:
    first = await _incident(live, zone, tag)
    second = await _incident(live, zone, tag + "-2")
    return Call(f"/v1/incidents/{first}/merge", {"into": second}, state=_watch(live, first, second))


async def _unit_status(live: LiveServer, zone: str, tag: str) -> Call:
    unit_id = await live.db.fetchval(
        "SELECT id FROM units WHERE zone_id = $1 AND status = 'available' ORDER BY id DESC LIMIT 1",
        zone,
    )

    async def state() -> Any:
        return await live.db.fetchval("SELECT status FROM units WHERE id = $1", unit_id)

    return Call(
        f"/v1/units/{unit_id}/status", {"status": "off_duty", "reason": "shift end"}, state=state
    )


async def _read_vehicle(live: LiveServer, zone: str, tag: str) -> Call:
    # The register is not zoned: a vehicle is one of the city's, on every desk.
    plate = f"OD02{tag.upper()[:2]}1234"
    await live.db.execute(
        "INSERT INTO vehicles (registration, updated_by) VALUES ($1, 'test')", plate
    )
    return Call(f"/v1/vehicles/{plate}")


async def _put_vehicle(live: LiveServer, zone: str, tag: str) -> Call:
    plate = f"OD02{tag.upper()[:2]}5678"

    async def state() -> Any:
        return await live.db.fetchval(
            "SELECT updated_by FROM vehicles WHERE registration = $1", plate
        )

    return Call(f"/v1/vehicles/{plate}", {"operator": "Mo Bus", "vehicle_type": "bus"}, state=state)


async def _eido(live: LiveServer, zone: str, tag: str) -> Call:
    return Call(f"/v1/incidents/{await _incident(live, zone, tag)}/eido")


async def _handoffs(live: LiveServer, zone: str, tag: str) -> Call:
    return Call(f"/v1/incidents/{await _incident(live, zone, tag)}/handoffs")


async def _handoff(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)
    # The live server has no agencies file: one nobody answers for (tries go on quietly).
    agencies = live.server.config.loaded_app.app.state.exchange.agencies  # type: ignore[attr-defined]
    agencies.setdefault("cad.test", Agency("cad.test", "http://127.0.0.1:9", ("s" * 16,)))

    async def state() -> Any:
        return (await _incident_state(live, incident_id), await live.count("handoffs"))

    return Call(
        f"/v1/incidents/{incident_id}/handoff",
        {"agency": "cad.test", "reason": "theirs"},
        state=state,
    )


def _alert_body(incident_id: int) -> dict[str, Any]:
    return {
        "event": "Fire",
        "headline": "Fire: keep away",
        "urgency": "Immediate",
        "severity": "Severe",
        "certainty": "Observed",
        "categories": ["Fire"],
        "incident_id": incident_id,
        "area": {"description": "around the fire"},
    }


async def _alert(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)

    async def state() -> Any:
        return await live.count("alerts")

    return Call("/v1/alerts", _alert_body(incident_id), state=state)


async def _issued(live: LiveServer, zone: str, tag: str) -> tuple[int, str]:
    incident_id = await _incident(live, zone, tag)
    answer = await live.http.post(
        "/v1/alerts", json=_alert_body(incident_id), headers=_auth(live, CITY)
    )
    assert answer.status_code == 201, answer.text
    identifier: str = answer.json()["identifier"]
    return incident_id, identifier


def _alert_state(live: LiveServer, identifier: str) -> Callable[[], Awaitable[Any]]:
    async def state() -> Any:
        return await live.db.fetchval(
            "SELECT superseded FROM alerts WHERE identifier = $1", identifier
        )

    return state


async def _update_alert(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id, identifier = await _issued(live, zone, tag)
    return Call(
        f"/v1/alerts/{identifier}/update",
        _alert_body(incident_id),
        state=_alert_state(live, identifier),
    )


async def _cancel_alert(live: LiveServer, zone: str, tag: str) -> Call:
    _incident_id, identifier = await _issued(live, zone, tag)
    return Call(
        f"/v1/alerts/{identifier}/cancel",
        {"reason": "out"},
        state=_alert_state(live, identifier),
    )


async def _volunteer(live: LiveServer, zone: str, tag: str, **extra: Any) -> str:
    """A volunteer of the zone, registered straight in PostgreSQL."""
    async with live.db.acquire() as conn, conn.transaction():
        view, _token = await volunteer_store.register(
            conn,
            live.settings.db_schema,
            name=f"V {tag}",
            phone="+919437000000",
            home_area=zone,
            languages=["or"],
            verified=False,
            actor="test",
            **extra,
        )
    volunteer_id: str = view["id"]
    return volunteer_id


def _volunteer_field(live: LiveServer, volunteer_id: str, column: str) -> Any:
    async def state() -> Any:
        return await live.db.fetchval(
            f"SELECT {column} FROM volunteers WHERE id = $1", volunteer_id
        )

    return state


async def _register_volunteer(live: LiveServer, zone: str, tag: str) -> Call:
    async def state() -> Any:
        return await live.db.fetchval("SELECT count(*) FROM volunteers WHERE home_area = $1", zone)

    body = {"name": f"V {tag}", "phone": "+919437000001", "home_area": zone, "languages": []}
    return Call("/v1/volunteers", body, state=state)


async def _list_volunteers(live: LiveServer, zone: str, tag: str) -> Call:
    volunteer_id = await _volunteer(live, zone, tag)
    return Call("/v1/volunteers", marker=volunteer_id)


async def _check_volunteer_list(
    live: LiveServer, own: Call, other: Call, who: str, answer: Any
) -> None:
    ids = {v["id"] for v in answer}
    assert own.marker in ids, who
    assert (other.marker in ids) is (who != DESK), who


async def _read_volunteer(live: LiveServer, zone: str, tag: str) -> Call:
    return Call(f"/v1/volunteers/{await _volunteer(live, zone, tag)}")


async def _verify_volunteer(live: LiveServer, zone: str, tag: str) -> Call:
    volunteer_id = await _volunteer(live, zone, tag)
    return Call(
        f"/v1/volunteers/{volunteer_id}/verification",
        {"verified": True, "reason": "police verification done"},
        state=_volunteer_field(live, volunteer_id, "verified"),
    )


async def _opt_out_volunteer(live: LiveServer, zone: str, tag: str) -> Call:
    volunteer_id = await _volunteer(live, zone, tag)
    return Call(
        f"/v1/volunteers/{volunteer_id}/opt-out",
        {"reason": "asked by phone"},
        state=_volunteer_field(live, volunteer_id, "opted_out"),
    )


async def _delete_volunteer(live: LiveServer, zone: str, tag: str) -> Call:
    volunteer_id = await _volunteer(live, zone, tag)
    return Call(
        f"/v1/volunteers/{volunteer_id}", state=_volunteer_field(live, volunteer_id, "count(*)")
    )


async def _incident_volunteers(live: LiveServer, zone: str, tag: str) -> Call:
    return Call(f"/v1/incidents/{await _incident(live, zone, tag)}/volunteers")


async def _volunteer_consent(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)

    async def state() -> Any:
        return await live.db.fetchval(
            "SELECT consent FROM volunteer_consent WHERE incident_id = $1", incident_id
        )

    return Call(f"/v1/incidents/{incident_id}/volunteer-consent", {"consent": "given"}, state=state)


async def _stand_down(live: LiveServer, zone: str, tag: str) -> Call:
    incident_id = await _incident(live, zone, tag)
    volunteer_id = await _volunteer(live, zone, tag)
    # Verified and available with no position: the running rule never alerts them itself.
    await live.db.execute(
        "UPDATE volunteers SET verified = true, available = true WHERE id = $1", volunteer_id
    )
    async with live.db.acquire() as conn, conn.transaction():
        claimed = await volunteer_alerts.claim(
            conn, live.settings.db_schema, incident_id, Pick(volunteer_id, 100.0), ttl_s=600
        )
    assert claimed is not None

    async def state() -> Any:
        return await live.db.fetchval("SELECT state FROM volunteer_alerts WHERE id = $1", claimed)

    return Call(
        f"/v1/incidents/{incident_id}/volunteers/{volunteer_id}/stand-down",
        {"reason": "police on scene"},
        state=state,
    )


def _reference(path: str, **params: str) -> Prepare:
    async def prepare(live: LiveServer, zone: str, tag: str) -> Call:
        return Call(path, params=params)

    return prepare


ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/v1/incidents"): Row(_list_incidents, "list", _check_incident_list),
    ("GET", "/v1/incidents/{incident_id}"): Row(_read_incident),
    ("POST", "/v1/incidents/{incident_id}/assign"): Row(_assign),
    ("POST", "/v1/assignments/{assignment_id}/cancel"): Row(_cancel),
    ("POST", "/v1/reports/{report_id}/split"): Row(_split),
    ("POST", "/v1/incidents/{incident_id}/location"): Row(_place),
    ("POST", "/v1/incidents/{incident_id}/confirm"): Row(_confirm),
    ("POST", "/v1/incidents/{incident_id}/notes"): Row(_note),
    ("POST", "/v1/incidents/{incident_id}/classify"): Row(_classify),
    ("POST", "/v1/incidents/{incident_id}/close"): Row(_close),
    ("POST", "/v1/incidents/{incident_id}/merge"): Row(_merge),
    ("GET", "/v1/units"): Row(_list_units, "list", _check_unit_list),
    ("POST", "/v1/units/{unit_id}/status"): Row(_unit_status),
    ("POST", "/v1/volunteers"): Row(_register_volunteer),
    ("GET", "/v1/volunteers"): Row(_list_volunteers, "list", _check_volunteer_list),
    ("GET", "/v1/volunteers/{volunteer_id}"): Row(_read_volunteer),
    ("POST", "/v1/volunteers/{volunteer_id}/verification"): Row(_verify_volunteer),
    ("POST", "/v1/volunteers/{volunteer_id}/opt-out"): Row(_opt_out_volunteer),
    ("DELETE", "/v1/volunteers/{volunteer_id}"): Row(_delete_volunteer),
    ("GET", "/v1/incidents/{incident_id}/volunteers"): Row(_incident_volunteers),
    ("POST", "/v1/incidents/{incident_id}/volunteer-consent"): Row(_volunteer_consent),
    ("POST", "/v1/incidents/{incident_id}/volunteers/{volunteer_id}/stand-down"): Row(_stand_down),
    # Reference data, the same for every operator (docs/api.md says why).
    ("GET", "/v1/callers/{number}"): Row(_reference("/v1/callers/+919437012345"), "reference"),
    ("GET", "/v1/incident-types"): Row(_reference("/v1/incident-types"), "reference"),
    ("GET", "/v1/zones"): Row(_reference("/v1/zones"), "reference"),
    ("GET", "/v1/geocode"): Row(_reference("/v1/geocode", q="Kalpana"), "reference"),
    # The vehicles register: city-wide reference data that every operator fills.
    ("GET", "/v1/vehicles"): Row(_reference("/v1/vehicles"), "reference"),
    ("GET", "/v1/vehicles/{registration}"): Row(_read_vehicle, "reference"),
    ("PUT", "/v1/vehicles/{registration}"): Row(_put_vehicle, "reference"),
    # Incidents that travel (docs/exchange.md): the incident's desk rule; alerts are
    # public anyway, and the agencies list is configuration.
    ("GET", "/v1/incidents/{incident_id}/eido"): Row(_eido),
    ("GET", "/v1/incidents/{incident_id}/handoffs"): Row(_handoffs),
    ("POST", "/v1/incidents/{incident_id}/handoff"): Row(_handoff),
    ("POST", "/v1/alerts"): Row(_alert),
    ("POST", "/v1/alerts/{identifier}/update"): Row(_update_alert),
    ("POST", "/v1/alerts/{identifier}/cancel"): Row(_cancel_alert),
    ("GET", "/v1/alerts"): Row(_reference("/v1/alerts"), "reference"),
    ("GET", "/v1/exchange/agencies"): Row(_reference("/v1/exchange/agencies"), "reference"),
}


def test_every_operator_route_has_a_row() -> None:
    """A route added without saying who may use it fails here (and in the matrix)."""
    assert set(OPERATOR_ROUTES) == set(ROWS)


def _auth(live: LiveServer, who: str) -> dict[str, str]:
    tokens = {
        "nobody": None,
        "wrong token": "not-a-token-of-anyone",
        "unit token": next(iter(live.credentials["units"].values())),
        "volunteer token": next(iter(live.credentials["volunteers"].values())),
        DESK: live.credentials["operators"][DESK],
        CITY: live.credentials["operators"][CITY],
    }
    token = tokens[who]
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _send(live: LiveServer, method: str, call: Call, who: str) -> httpx.Response:
    return await live.http.request(
        method,
        call.path,
        params=call.params,
        json=call.body if method != "GET" else None,
        headers=_auth(live, who),
    )


async def _state(call: Call) -> Any:
    return await call.state() if call.state else None


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES)
async def test_route_refuses_and_allows_exactly_as_the_console_shows(
    live: LiveServer, method: str, path: str
) -> None:
    row = ROWS.get((method, path))
    assert row is not None, f"{method} {path} has no row in ROWS: say who may use it"
    own = await row.prepare(live, OWN_ZONE, "own")
    other = await row.prepare(live, OTHER_ZONE, "other")
    before_own, before_other = await _state(own), await _state(other)

    for who in ("nobody", "wrong token", "unit token", "volunteer token"):
        for call in (own, other):
            answer = await _send(live, method, call, who)
            assert answer.status_code == 401, (who, answer.text)
            assert answer.json()["error"] == "Unauthorized", who
            assert answer.headers["www-authenticate"] == "Bearer"
    assert await _state(own) == before_own
    assert await _state(other) == before_other

    # A desk on another zone's target: as if it did not exist.
    answer = await _send(live, method, other, DESK)
    if row.kind == "target":
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == "NotFound"
        assert "not on this desk" in answer.json()["detail"]
        assert await _state(other) == before_other
    else:
        assert answer.status_code == 200, answer.text
        if row.check_list is not None:
            await row.check_list(live, own, other, DESK, answer.json())

    # The desk on its own zone, the city on the other: allowed, and it takes effect.
    for who, call, before in ((DESK, own, before_own), (CITY, other, before_other)):
        answer = await _send(live, method, call, who)
        assert answer.status_code in (200, 201), (who, answer.text)
        if call.state is not None:
            assert await _state(call) != before, f"{who}: {method} {path} changed nothing"
        if row.check_list is not None:
            await row.check_list(live, own, other, who, answer.json())


async def test_a_desk_cannot_merge_across_its_border(live: LiveServer) -> None:
    """Both incidents of a merge must be on the desk, either way round."""
    mine = await _incident(live, OWN_ZONE, "mine")
    theirs = await _incident(live, OTHER_ZONE, "theirs")
    state = _watch(live, mine, theirs)
    before = await state()
    for source, target in ((mine, theirs), (theirs, mine)):
        answer = await _send(
            live, "POST", Call(f"/v1/incidents/{source}/merge", {"into": target}), DESK
        )
        assert answer.status_code == 404, answer.text
        assert str(theirs) in answer.json()["detail"]
    assert await state() == before


async def test_unlocated_emergencies_are_on_every_desk(live: LiveServer) -> None:
    """An emergency with no zone is on every desk, as on the console: no call falls
    between desks."""
    lost = await live.post_panic(
        {"trigger_id": "x", "device_id": "x", "location": {"lat": 123, "lon": 85.8}}
    )
    incident_id = lost.json()["incident_id"]
    assert (
        await live.db.fetchval("SELECT zone_id FROM incidents WHERE id = $1", incident_id)
    ) is None
    read = await _send(live, "GET", Call(f"/v1/incidents/{incident_id}"), DESK)
    assert read.status_code == 200
    listed = await _send(live, "GET", Call("/v1/incidents"), DESK)
    assert incident_id in {i["id"] for i in listed.json()}
    note = await _send(
        live, "POST", Call(f"/v1/incidents/{incident_id}/notes", {"text": "on it"}), DESK
    )
    assert note.status_code == 201


async def test_another_zones_incident_reads_like_one_that_does_not_exist(
    live: LiveServer,
) -> None:
    """The desk's 404 does not tell a hidden incident from a missing one."""
    theirs = await _incident(live, OTHER_ZONE, "theirs")
    missing = theirs + 1000
    hidden = (await _send(live, "GET", Call(f"/v1/incidents/{theirs}"), DESK)).json()
    absent = (await _send(live, "GET", Call(f"/v1/incidents/{missing}"), DESK)).json()
    assert hidden["detail"].replace(str(theirs), "N") == absent["detail"].replace(str(missing), "N")


async def test_the_sql_filters_and_the_pure_rule_agree(live: LiveServer) -> None:
    """Lists filter in SQL, single reads and actions in Python: the two spell one rule."""
    desks: list[frozenset[str] | None] = [None, frozenset(), frozenset({"a"}), frozenset("ab")]
    for zones in desks:
        operator = Principal("operator", "probe", zones)
        param = sorted(zones) if zones is not None else None
        for zone in (None, "a", "c"):
            incident_sql = await live.db.fetchval(
                f"SELECT {readmodels.incident_on_desk_sql('$1::text', '$2')}", zone, param
            )
            unit_sql = await live.db.fetchval(
                f"SELECT {readmodels.unit_on_desk_sql('$1::text', '$2')}", zone, param
            )
            assert incident_sql is access.sees_incident_zone(operator, zone), (zones, zone)
            assert unit_sql is access.sees_unit_zone(operator, zone), (zones, zone)

"""The hub routes events to the MDTs they can concern, following their jobs."""

from __future__ import annotations

import json
from typing import Any

from dispatch.hub import Hub
from dispatch.keys import RedisKeys
from dispatch.scope import MdtScope


def _event(kind: str, *, unit: str | None = None, incident: int | None = None) -> dict[str, Any]:
    return {
        "type": "event",
        "position": "1",
        "event": {"type": kind, "unit_id": unit, "incident_id": incident, "data": {}},
    }


def test_mdts_get_their_units_events_and_their_jobs_incident_events() -> None:
    hub = Hub(redis=None, keys=RedisKeys("t:"))  # type: ignore[arg-type]  # never read here
    scopes = {u: MdtScope(u) for u in ("a", "b")}
    mdts = {
        u: hub.subscribe(
            lambda m, s=scope: s.admits(m["event"]),
            100,
            unit_id=u,
            followed=lambda s=scope: s.incident_ids,
        )
        for u, scope in scopes.items()
    }
    console = hub.subscribe(lambda m: True, 100)

    hub.deliver(_event("assignment.offered", unit="a", incident=7))
    hub.deliver(_event("incident.location_updated", incident=7))
    hub.deliver(_event("incident.location_updated", incident=8))
    hub.deliver(_event("assignment.declined", unit="a", incident=7))
    hub.deliver(_event("incident.location_updated", incident=7))

    def kinds(sub: Any) -> list[tuple[str, int | None]]:
        got = []
        while not sub.queue.empty():
            # What is queued is the text every client of the audience is sent.
            event = json.loads(sub.queue.get_nowait().text)["event"]
            got.append((event["type"], event["incident_id"]))
        return got

    assert kinds(mdts["a"]) == [
        ("assignment.offered", 7),
        ("incident.location_updated", 7),
        ("assignment.declined", 7),
    ]
    assert kinds(mdts["b"]) == []
    assert len(kinds(console)) == 5
    assert hub.client_count == 3
    hub.unsubscribe(mdts["a"])
    assert hub.client_count == 2


def test_consoles_get_one_text_per_event_by_audience() -> None:
    """Every console an event reaches gets the very same text (serialised once); a desk
    gets its zones' events and unzoned ones, never another zone's."""
    hub = Hub(redis=None, keys=RedisKeys("t:"))  # type: ignore[arg-type]  # never read here
    city = [hub.subscribe(lambda m: True, 100) for _ in range(2)]
    north = [hub.subscribe(lambda m: True, 100, desk=frozenset({"n"})) for _ in range(2)]
    south = hub.subscribe(lambda m: True, 100, desk=frozenset({"s"}))

    def zoned(zone: str | None, position: int) -> dict[str, Any]:
        message = _event("incident.created", incident=position)
        message["position"] = str(position)
        message["event"]["zone_id"] = zone
        return message

    hub.deliver(zoned("n", 1))
    hub.deliver(zoned(None, 2))
    hub.deliver(zoned("s", 3))

    def got(sub: Any) -> list[Any]:
        items = []
        while not sub.queue.empty():
            items.append(sub.queue.get_nowait())
        return items

    city_items, north_items = [got(c) for c in city], [got(c) for c in north]
    assert [o.position for o in city_items[0]] == [1, 2, 3]
    assert [o.position for o in north_items[0]] == [1, 2]
    assert [o.position for o in got(south)] == [2, 3]
    # One serialisation per event: the same object, not equal copies.
    for a, b in zip(city_items[0], city_items[1], strict=True):
        assert a.text is b.text
    assert north_items[0][0].text is city_items[0][0].text
    assert json.loads(north_items[1][1].text)["event"]["incident_id"] == 2
    hub.unsubscribe(south)
    assert hub.client_count == 4

"""The hub routes events to the MDTs they can concern, following their jobs."""

from __future__ import annotations

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
            event = sub.queue.get_nowait()["event"]
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

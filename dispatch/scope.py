"""Who sees which event: a console its desk's zones (or the city), an MDT its own unit
and its own jobs.

Pure; the websocket session keeps one scope per connection and asks it about every
live event, in order, so the scope can follow the unit's assignments as they happen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_JOINS = frozenset({"assignment.offered", "assignment.accepted"})
_LEAVES = frozenset({"assignment.declined", "assignment.expired", "assignment.cancelled"})
_ENDS = frozenset({"incident.closed", "incident.merged"})


class MdtScope:
    """An MDT sees events about its unit, and incident events (with no unit) of the
    incidents its unit is offered or assigned; never another unit's offers."""

    def __init__(self, unit_id: str, incident_ids: Iterable[int] = ()) -> None:
        self.unit_id = unit_id
        self.incident_ids = set(incident_ids)

    def admits(self, event: dict[str, Any]) -> bool:
        """Whether to deliver ``event`` (the ``event`` object of a message)."""
        incident_id = event.get("incident_id")
        kind = event.get("type")
        if event.get("unit_id") == self.unit_id:
            if incident_id is not None:
                if kind in _JOINS:
                    self.incident_ids.add(incident_id)
                elif kind in _LEAVES or (
                    kind == "unit.status_changed"
                    and (event.get("data") or {}).get("assignment_status") == "completed"
                ):
                    self.incident_ids.discard(incident_id)
            return True
        if event.get("unit_id") is None and incident_id in self.incident_ids:
            if kind in _ENDS:
                self.incident_ids.discard(incident_id)
            return True
        return False


class DeskScope:
    """A console of a desk sees the events of its zones, and every event that has no
    zone (an emergency not yet located, or outside every jurisdiction), so that no
    unlocated emergency falls between desks."""

    def __init__(self, zones: frozenset[str]) -> None:
        self.zones = zones

    def admits(self, event: dict[str, Any]) -> bool:
        """Whether to deliver ``event`` (the ``event`` object of a message)."""
        zone = event.get("zone_id")
        return zone is None or zone in self.zones

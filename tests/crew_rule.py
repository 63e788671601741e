"""The crew rule as docs/protocol.md states it: the tests' own model, not the core's table.

What a crew may report from each status: offered is left only by answering, and only the
engine makes a unit offered or dispatched.
"""

from __future__ import annotations

CREW_MAY: dict[str, set[str]] = {
    "off_duty": {"available"},
    "available": {"off_duty", "out_of_service"},
    "offered": set(),
    "dispatched": {"en_route", "on_scene"},
    "en_route": {"on_scene"},
    "on_scene": {"returning", "available"},
    "returning": {"available"},
    "out_of_service": {"available", "off_duty"},
}

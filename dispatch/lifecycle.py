"""Unit status lifecycle: which changes a crew may report. Pure, no I/O."""

from __future__ import annotations

from dispatch.errors import InvalidTransition

UNIT_STATUSES = (
    "off_duty",
    "available",
    "offered",
    "dispatched",
    "en_route",
    "on_scene",
    "returning",
    "out_of_service",
)

# What a crew may report from each status. `offered` is left only by answering the offer
# (accept/decline), and only the engine puts a unit into `offered` or `dispatched`.
_CREW_TRANSITIONS: dict[str, frozenset[str]] = {
    "off_duty": frozenset({"available"}),
    "available": frozenset({"off_duty", "out_of_service"}),
    "offered": frozenset(),
    "dispatched": frozenset({"en_route", "on_scene"}),
    "en_route": frozenset({"on_scene"}),
    "on_scene": frozenset({"returning", "available"}),
    "returning": frozenset({"available"}),
    "out_of_service": frozenset({"available", "off_duty"}),
}

# Reaching one of these from an assignment in progress means the job is done.
ENDS_ASSIGNMENT = frozenset({"returning", "available"})
# The incident follows its unit to the scene.
INCIDENT_STATUS_FOR_UNIT = {"en_route": "dispatched", "on_scene": "on_scene"}


def check_crew_transition(unit_id: str, current: str, wanted: str) -> None:
    """Raise InvalidTransition unless a crew may move the unit from current to wanted."""
    if wanted not in UNIT_STATUSES:
        raise InvalidTransition("unit", unit_id, current, wanted)
    if wanted not in _CREW_TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition("unit", unit_id, current, wanted)

"""Unit and assignment lifecycles: which changes are legal, and what each one moves.

A crew's status report and an MDT's answer to an offer each go through one pure
function that returns the change to apply, or a typed refusal the shell raises as the
error a person can act on. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

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
CREW_TRANSITIONS: dict[str, frozenset[str]] = {
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
# The incident statuses a crew's report may move the incident on from (only forward: on
# a multi-agency plan one crew on scene keeps the incident on scene while another drives).
INCIDENT_MOVES_FROM = {
    "dispatched": ("new", "queued", "offered"),
    "on_scene": ("new", "queued", "offered", "dispatched"),
}


class OfferExpired(InvalidTransition):
    """The MDT answered after the offer's deadline."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A change the lifecycle does not allow, and why."""

    kind: str  # "unit" or "assignment"
    ident: str | int
    current: str
    wanted: str
    expired: bool = False  # the offer's deadline passed (the answer came too late)

    def error(self) -> InvalidTransition:
        """The error to raise for it (OfferExpired for a late answer)."""
        cls = OfferExpired if self.expired else InvalidTransition
        return cls(self.kind, self.ident, self.current, self.wanted)


@dataclass(frozen=True, slots=True)
class CrewChange:
    """A crew's legal status report: the unit's new status, what the incident moves to
    (if it is behind), and whether the unit's job is over."""

    unit_status: str
    incident_status: str | None
    incident_moves_from: tuple[str, ...]
    ends_assignment: bool


@dataclass(frozen=True, slots=True)
class OfferAnswer:
    """An MDT's legal answer to an offer and what it moves."""

    assignment_status: str  # accepted, declined or expired
    unit_status: str  # dispatched or available
    incident_status: str | None  # dispatched on accept; None: the slot reopens
    reoffer: bool  # a decline: the incident goes to the next unit


def crew_report(unit_id: str, current: str, wanted: str) -> CrewChange | Refused:
    """The change a crew's report of ``wanted`` makes from ``current``, or the refusal."""
    if wanted not in UNIT_STATUSES or wanted not in CREW_TRANSITIONS.get(current, frozenset()):
        return Refused("unit", unit_id, current, wanted)
    incident_status = INCIDENT_STATUS_FOR_UNIT.get(wanted)
    return CrewChange(
        unit_status=wanted,
        incident_status=incident_status,
        incident_moves_from=INCIDENT_MOVES_FROM.get(incident_status or "", ()),
        ends_assignment=wanted in ENDS_ASSIGNMENT,
    )


def check_crew_transition(unit_id: str, current: str, wanted: str) -> None:
    """Raise InvalidTransition unless a crew may move the unit from current to wanted."""
    change = crew_report(unit_id, current, wanted)
    if isinstance(change, Refused):
        raise change.error()


def answer_offer(
    assignment_id: int, status: str, *, late: bool, accept: bool
) -> OfferAnswer | Refused:
    """What accepting (or declining) an offer in ``status`` does; refused unless it is
    still an open offer within its deadline."""
    wanted = "accepted" if accept else "declined"
    if status != "offered":
        # Swept already (expired) is as late as not yet swept: the crew is told the offer
        # expired (OfferExpired, docs/protocol.md), not that the state is wrong.
        return Refused("assignment", assignment_id, status, wanted, expired=status == "expired")
    if late:
        return Refused("assignment", assignment_id, "expired", wanted, expired=True)
    if accept:
        return OfferAnswer("accepted", "dispatched", "dispatched", reoffer=False)
    return OfferAnswer("declined", "available", None, reoffer=True)


def expire_offer(status: str, *, late: bool) -> OfferAnswer | None:
    """What the deadline does to an offer in ``status``: an open offer past it expires
    (the unit is free again and the incident goes to the next unit, as after a decline);
    anything else (answered, or not yet due) is left alone (None)."""
    if status != "offered" or not late:
        return None
    return OfferAnswer("expired", "available", None, reoffer=True)

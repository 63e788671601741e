"""Which incidents go to another agency on their own, by its hand-over rule (an
operator may always hand one over by hand). Pure: the loop in dispatch.exchange.runtime
reads the snapshot and hands over what this returns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dispatch.exchange.agencies import Agency, HandOverRule


@dataclass(frozen=True, slots=True)
class Waiting:
    """An open incident with a slot of its plan that no unit is offered or on its way
    for, as the rule loop reads it."""

    incident_id: int
    type: str
    unfilled: frozenset[str]
    waited_s: float  # since it was reported
    handed_to: frozenset[str]  # agencies it was ever handed to (by a rule or by hand)


def due(
    agencies: Mapping[str, Agency], waiting: Iterable[Waiting]
) -> list[tuple[int, Agency, HandOverRule]]:
    """Each incident to hand over now, and to whom: its type is one of an agency's rule,
    the rule's slot still has no unit after the rule's delay, and it was never handed to
    that agency (a refused or failed hand-off is the operators' to try again). One agency
    per incident: the first configured whose rule matches."""
    ruled = [(a, a.hand_over_when) for a in agencies.values() if a.hand_over_when is not None]
    chosen: list[tuple[int, Agency, HandOverRule]] = []
    for item in waiting:
        for agency, rule in ruled:
            if (
                item.type in rule.types
                and rule.no_unit_of in item.unfilled
                and item.waited_s >= rule.after_s
                and agency.id not in item.handed_to
            ):
                chosen.append((item.incident_id, agency, rule))
                break
    return chosen

"""The waiting queue's choices: which waiting incident a free unit serves, in which
order, from one snapshot of the queue and the free fleet. Pure, no I/O.

Incidents are served by priority, then by how long they have waited (then id, so every
instance orders the same queue the same way); each gets the decision its plan's open
slots would get from the units not already proposed to one served before it. The shell
then claims in this order; a claim another instance won moves that slot on to its next
candidate, and a later incident may still get the unit an earlier one lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dispatch.core.decide import Decision, decide_fill
from dispatch.core.facts import IncidentFacts, PlanSnapshot, Rules, TravelModel, UnitSnapshot
from dispatch.core.rank import Policy


@dataclass(frozen=True, slots=True)
class Waiting:
    """A waiting incident as the queue reads it: its facts, its plan's open slots, the
    units that refused it, and its zone's neighbours."""

    facts: IncidentFacts
    unfilled: tuple[str, ...]
    refused: frozenset[str]
    neighbour_zone_ids: frozenset[str]
    failed_offers: int = 0  # declined or expired


def serve_order(waiting: Iterable[Waiting]) -> list[Waiting]:
    """Most urgent first, then the longest waiting, then the lowest id."""
    return sorted(waiting, key=lambda w: (w.facts.type.priority, -w.facts.waited_s, w.facts.id))


def worth_serving(waiting: Waiting, free_agencies: frozenset[str], max_offers: int) -> bool:
    """Whether a free unit could serve it now: some open slot is of a free unit's agency,
    and its offers were not refused so often that operators were left to decide."""
    return waiting.failed_offers < max_offers and bool(free_agencies & set(waiting.unfilled))


def sweep(
    waiting: Sequence[Waiting],
    units: Sequence[UnitSnapshot],
    policy: Policy,
    travel: TravelModel,
    rules: Rules,
    *,
    now: float,
) -> list[tuple[PlanSnapshot, Decision]]:
    """Each incident worth serving, in serve order, with its snapshot and decision; a
    unit proposed first to one incident is not in the snapshots of those after it."""
    free = list(units)
    plans: list[tuple[PlanSnapshot, Decision]] = []
    agencies = frozenset(u.agency for u in free)
    for item in serve_order(waiting):
        if not free:
            break
        if not worth_serving(item, agencies, rules.max_offers):
            continue
        snapshot = PlanSnapshot(
            item.facts, item.unfilled, tuple(free), item.refused, item.neighbour_zone_ids, now
        )
        decision = decide_fill(snapshot, policy, travel, rules)
        proposed = {s.first.unit_id for s in decision.slots if s.first is not None}
        free = [u for u in free if u.id not in proposed]
        plans.append((snapshot, decision))
    return plans

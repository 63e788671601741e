"""Fill an incident's plan: from one snapshot, the units to offer, slot by slot.

The decision names, for each open slot, the candidates in the order to claim them (the
shell offers the first whose conditional claim wins; another instance may have taken
the first since the snapshot was read), whether the slot is held, whether it may
pre-empt, and the verdict if no slot gets a unit. One unit is never proposed for two
slots, nor a unit that refused the incident. Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dispatch.core.explain import why_none
from dispatch.core.facts import Need, PlanSnapshot, Rules, TravelModel
from dispatch.core.plans import Verdict, after_fill, may_preempt, slots_in_order
from dispatch.core.rank import Candidate, Policy, choose, eligible, need_of


@dataclass(frozen=True, slots=True)
class SlotDecision:
    """One open slot: whom to offer it, in order, and what to do if none can take it."""

    agency: str
    need: Need
    ranked: tuple[Candidate, ...]
    held: bool  # nobody ranked only because the policy holds the need
    preempt: bool  # with nobody free, a unit may be taken off a lesser job
    why: str | None = None  # nobody ranked and not held: why (for operators)

    @property
    def first(self) -> Candidate | None:
        """The unit to offer, if the snapshot still holds when the shell claims it."""
        return self.ranked[0] if self.ranked else None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do for an incident's open slots."""

    slots: tuple[SlotDecision, ...]

    @property
    def offers(self) -> dict[str, str]:
        """The unit to offer per slot, were every first claim to win."""
        return {s.agency: s.first.unit_id for s in self.slots if s.first is not None}

    @property
    def verdict(self) -> Verdict:
        """Why the incident waits, were no pre-emption to free a unit."""
        missing = [s.agency for s in self.slots if s.first is None and not s.held]
        held = [s.agency for s in self.slots if s.first is None and s.held]
        why = {s.agency: s.why for s in self.slots if s.why is not None}
        return after_fill(missing, held, why)


def decide_slot(
    snapshot: PlanSnapshot, agency: str, policy: Policy, travel: TravelModel, rules: Rules
) -> SlotDecision:
    """The decision for one slot, from the snapshot's units."""
    need = need_of(snapshot.incident, agency, snapshot.neighbour_zone_ids, rules)
    units = eligible(
        need, snapshot.units, snapshot.refused, now=snapshot.now, stale_s=rules.position_stale_s
    )
    choice = choose(need, units, policy, travel)
    why = None
    if not choice.ranked and not choice.held:
        why = why_none(
            need,
            snapshot.units,
            snapshot.refused,
            now=snapshot.now,
            stale_s=rules.position_stale_s,
            travel=travel,
        )
    return SlotDecision(
        agency=agency,
        need=need,
        ranked=choice.ranked,
        held=choice.held,
        preempt=may_preempt(snapshot.incident.type.priority, rules.preempt_priority),
        why=why,
    )


def decide_fill(
    snapshot: PlanSnapshot, policy: Policy, travel: TravelModel, rules: Rules
) -> Decision:
    """Every open slot's decision, in the plan's order; a unit proposed first for one
    slot is not proposed for a later one."""
    slots: list[SlotDecision] = []
    taken: set[str] = set()
    for agency in slots_in_order(snapshot.incident.type.plan, snapshot.unfilled):
        slot = decide_slot(snapshot, agency, policy, travel, rules)
        ranked = tuple(c for c in slot.ranked if c.unit_id not in taken)
        slot = replace(slot, ranked=ranked)
        if slot.first is not None:
            taken.add(slot.first.unit_id)
        slots.append(slot)
    return Decision(tuple(slots))

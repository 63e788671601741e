"""An incident's response plan: which slots to fill, and what to do when one stays empty.

A plan names the agencies an incident type needs (a fire: fire and police). Each agency
with no unit offered or on its way is an open slot. These rules say in which order the
slots are filled, whether a priority-1 incident may take a unit off a lesser job
(pre-emption), and, once a pass is over, whether the incident waits, is held, or is
escalated to operators, with the reason they are shown. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dispatch.core.facts import Need, TravelModel, UnitSnapshot
from dispatch.core.rank import Candidate, Policy


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the incident's record says after a pass: why it waits (None: it does not)
    and what operators are alerted to (None: nothing new)."""

    wait_reason: str | None
    escalate_reason: str | None


def slots_in_order(plan: Sequence[str], unfilled: Iterable[str]) -> list[str]:
    """The open slots to fill: in the plan's order, then any slot no longer in the plan
    (a reclassified incident keeps waiting for what it was promised)."""
    open_slots = list(unfilled)
    return [a for a in plan if a in open_slots] + [a for a in open_slots if a not in plan]


def may_preempt(priority: int, preempt_priority: int | None) -> bool:
    """Whether an incident of ``priority`` may take a unit off a lesser job (only
    priority 1, and only where the deployment allows pre-emption)."""
    return priority == 1 and preempt_priority is not None


def preempt_order(
    need: Need,
    busy: Iterable[UnitSnapshot],
    refused: frozenset[str],
    policy: Policy,
    travel: TravelModel,
) -> list[Candidate]:
    """Busy units (on jobs lesser enough to lose them) in the order to take one off its
    job for ``need``: the policy's order, never a unit that refused this incident."""
    return policy(need, [u for u in busy if u.id not in refused], travel)


def held_reason(agencies: list[str]) -> str:
    """Why a low-priority incident waits (the policy's hold): no unit that can arrive in
    time is free, and those farther away are kept for emergencies near them for a while."""
    return f"held for a unit that can arrive in time ({', '.join(agencies)})"


def no_unit_reason(agencies: list[str], why: Mapping[str, str] | None = None) -> str:
    """Why an incident waits, naming the agencies it still needs and, where known, why
    each got nobody (``why``: per agency, e.g. "2 units sent no position for over 300 s")."""
    named = [f"{a}: {why[a]}" if why and a in why else a for a in agencies]
    return "no available unit in reach" + (f" ({'; '.join(named)})" if named else "")


def after_fill(
    missing: list[str], held: list[str], why: Mapping[str, str] | None = None
) -> Verdict:
    """After a pass: an agency with no unit at all waits and is escalated (operators may
    find one); one only held waits quietly; otherwise nothing to record."""
    if missing:
        reason = no_unit_reason(missing, why)
        return Verdict(reason, reason)
    if held:
        return Verdict(held_reason(held), None)
    return Verdict(None, None)


def after_refusals(failed: int, max_offers: int) -> Verdict | None:
    """After ``failed`` offers were declined or expired: at ``max_offers`` the incident
    waits for operators (escalated) instead of being offered again; None: offer again."""
    if failed < max_offers:
        return None
    return Verdict("no unit accepted in time", f"{failed} offers were not accepted")

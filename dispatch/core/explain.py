"""Why a slot got no unit, in words an operator can act on. Pure, no I/O.

"No available unit in reach" alone sends an operator hunting: were there none on duty,
did they all refuse, or is the fleet silent (MDTs that stopped reporting are not
trusted as available)? The count of each reason the agency's free units were passed
over tells which, and so what to do (call the crews, wake the MDTs, send from farther).
"""

from __future__ import annotations

from collections.abc import Iterable

from dispatch.core.facts import Need, TravelModel, UnitSnapshot
from dispatch.core.rank import is_fresh
from geo.distance import distance_m


def _units(count: int) -> str:
    return f"{count} unit" if count == 1 else f"{count} units"


def why_none(
    need: Need,
    units: Iterable[UnitSnapshot],
    refused: frozenset[str],
    *,
    now: float,
    stale_s: float | None,
    travel: TravelModel,
) -> str:
    """Why no unit of ``need``'s agency was ranked, e.g. "2 units sent no position for
    over 300 s, 1 unit refused it"; "none free" when the agency has no free unit."""
    stale = refusing = unable = far = other = 0
    for unit in units:
        if unit.agency != need.agency or unit.status != "available":
            continue
        if unit.id in refused:
            refusing += 1
        elif not is_fresh(unit.position_at, now, stale_s):
            stale += 1
        elif not need.capabilities <= unit.capabilities:
            unable += 1
        elif distance_m(need.point, unit.position) > travel.max_radius_m:
            far += 1
        else:
            other += 1
    parts = []
    if stale:
        parts.append(f"{_units(stale)} sent no position for over {stale_s:.0f} s")
    if refusing:
        parts.append(f"{_units(refusing)} refused it")
    if unable:
        parts.append(f"{_units(unable)} without {', '.join(sorted(need.capabilities))}")
    if far:
        parts.append(f"{_units(far)} beyond {travel.max_radius_m / 1000:.0f} km")
    if other:
        parts.append(f"{_units(other)} not chosen by the dispatch policy")
    return ", ".join(parts) or "none free"

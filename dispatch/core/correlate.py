"""Which incident a report belongs to, and whether its location is the better one.

Pure rules, no I/O; dispatch.intake runs the queries and applies them (join the incident
these rules match, or create one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from geo.location import Location

# Emergencies of one person (or one vehicle's passengers): two panics from two devices a
# few metres apart are two people, or two buses, in danger, so proximity alone never
# joins them.
PERSONAL_TYPES = frozenset({"panic", "women_in_distress", "vehicle_panic"})


@dataclass(frozen=True, slots=True)
class CorrelationPolicy:
    """How reports are matched to open incidents (both windows in seconds)."""

    same_sender_window_s: float = 900.0
    nearby_radius_m: float = 150.0
    nearby_window_s: float = 600.0


def sender_window_applies(key: str) -> bool:
    """A device key matches its open incident however old; a phone number only within
    the window (the same number may report a new emergency tomorrow)."""
    return not key.startswith("device:")


def may_join_nearby(incident_type: str) -> bool:
    """Whether reports of this type may join a nearby incident of the same type."""
    return incident_type not in PERSONAL_TYPES


def _radius(location: Location) -> float:
    return location.radius_m if location.radius_m is not None else math.inf


def is_better(
    new: Location | None,
    current: Location | None,
    *,
    new_time: datetime | None,
    current_time: datetime | None,
) -> bool:
    """Whether ``new`` should replace the incident's ``current`` location.

    Smaller uncertainty wins. A newer fix that is at most twice as uncertain also wins,
    because the person may be moving (a victim in a vehicle, a panic app re-sending).
    """
    if new is None:
        return False
    if current is None:
        return True
    if _radius(new) < _radius(current):
        return True
    newer = new_time is not None and (current_time is None or new_time > current_time)
    return newer and _radius(new) <= 2 * _radius(current)


def best_fix(fixes: Iterable[tuple[Location, datetime | None]]) -> Location | None:
    """The location an incident's reports give it, taken in arrival order by the rule
    between reports (``is_better``): what it would have had without the ones left out."""
    best: Location | None = None
    best_time: datetime | None = None
    for location, time in fixes:
        if is_better(location, best, new_time=time, current_time=best_time):
            best, best_time = location, time
    return best


def tel_key(number: str) -> str | None:
    """The correlation key of a phone number, or None if it has too few digits.

    Indian numbers arrive as +91XXXXXXXXXX, 91XXXXXXXXXX, 0XXXXXXXXXX or XXXXXXXXXX
    depending on the network; the last ten digits identify the subscriber in all of them.
    """
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) < 6:
        return None
    return "tel:" + (digits[-10:] if len(digits) >= 10 else digits)

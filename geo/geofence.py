"""Home-zone geofence with hysteresis (Traccar-style enter/exit), pure.

A patrol car driving along its jurisdiction's border would cross it back and forth every
few pings; an alert for each would bury the console. A unit counts as having left only
once it is more than ``hysteresis_m`` outside, and as back once it is inside again.
"""

from __future__ import annotations

from enum import Enum


class Crossing(Enum):
    """What a new position means for a unit and its home zone."""

    LEFT = "left"
    RETURNED = "returned"


def crossing(
    *, distance_outside_m: float, was_outside: bool, hysteresis_m: float
) -> Crossing | None:
    """The crossing this position makes, or None when the unit's state is unchanged.

    ``distance_outside_m`` is 0 inside the home zone, else metres to its border.
    """
    if not was_outside and distance_outside_m > hysteresis_m:
        return Crossing.LEFT
    if was_outside and distance_outside_m == 0:
        return Crossing.RETURNED
    return None

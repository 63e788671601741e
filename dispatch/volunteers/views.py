"""What a volunteer is told about an alert, pure: the one place that decides it.

Before accepting: the incident's type and a location rounded to the policy's grid
(about 200 m), so a volunteer can decide whether to go but cannot find the caller
without committing. After accepting: the exact location and whether the caller agreed
to volunteers coming. Never the caller's number, the incident's id or another
volunteer's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatch.volunteers.approx import approximate
from geo.points import GeoPoint

CONSENT_STATES = ("given", "refused", "not_asked")


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """The facts behind one alert, as read for its volunteer."""

    alert_id: int
    incident_id: int  # for the socket to follow the incident; never shown to the volunteer
    state: str
    incident_type: str
    incident_label: str
    incident_point: GeoPoint | None
    incident_radius_m: float | None
    consent: str | None
    distance_m: float
    alerted_at: datetime
    expires_at: datetime
    end_reason: str | None


def volunteer_view(facts: AlertFacts, *, grid_m: float) -> dict[str, Any]:
    """The ``alert`` object sent to the volunteer for ``facts``."""
    view: dict[str, Any] = {
        "alert_id": facts.alert_id,
        "state": facts.state,
        "incident_type": facts.incident_type,
        "incident_label": facts.incident_label,
        # To the nearest 100 m: the exact distance would narrow the rounded location.
        "distance_m": round(facts.distance_m, -2),
        "alerted_at": facts.alerted_at.isoformat(),
    }
    if facts.state == "alerted":
        view["expires_at"] = facts.expires_at.isoformat()
        if facts.incident_point is not None:
            rough = approximate(facts.incident_point, grid_m)
            view["location"] = {
                "lat": rough.lat,
                "lon": rough.lon,
                "exact": False,
                "approx_m": grid_m,
            }
    elif facts.state == "accepted":
        if facts.incident_point is not None:
            view["location"] = {
                "lat": facts.incident_point.lat,
                "lon": facts.incident_point.lon,
                "exact": True,
                "radius_m": facts.incident_radius_m,
            }
        view["consent"] = facts.consent or "not_asked"
    else:
        view["reason"] = facts.end_reason
    return view

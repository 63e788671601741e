"""Panic trigger -> IncidentReport. Pure: no HTTP, no SQL."""

from __future__ import annotations

from dispatch.correlate import tel_key
from dispatch.reports import IncidentReport
from gateways.panic.schema import PanicTrigger
from geo.location import InvalidLocation, Location, location_from_fix

# App categories that name an incident type; anything else is a generic panic.
CATEGORY_TYPES = {
    "women_safety": "women_in_distress",
    "women_in_distress": "women_in_distress",
    "medical": "medical",
    "fire": "fire",
    "accident": "accident",
    "accident_injuries": "accident_injuries",
    "crime": "crime_in_progress",
    "other": "other",
}


def to_report(trigger: PanicTrigger, *, gateway_id: str) -> IncidentReport:
    """Normalise a trigger; an unusable fix is dropped with a warning, never guessed."""
    warnings: list[str] = []
    location: Location | None = None
    if trigger.location is None:
        warnings.append("location: the trigger carried no GPS fix")
    else:
        fix = trigger.location
        try:
            location = location_from_fix(
                lat=fix.lat, lon=fix.lon, radius_m=fix.accuracy_m, method="gps", time=fix.time
            )
        except InvalidLocation as err:
            warnings.append(f"location dropped: {err}")
    category = (trigger.category or "").strip().lower()
    keys = [f"device:{trigger.device_id}"]
    if trigger.user is not None and trigger.user.phone and (tel := tel_key(trigger.user.phone)):
        keys.append(tel)
    return IncidentReport(
        channel="panic",
        gateway_id=gateway_id,
        external_id=trigger.trigger_id,
        sender=trigger.device_id,
        incident_type=CATEGORY_TYPES.get(category, "panic"),
        location=location,
        payload=trigger.model_dump(mode="json"),
        warnings=tuple(warnings),
        sender_keys=tuple(keys),
    )

"""The result of reading an AML message, and the error for input that is not AML."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from geo.location import Location


class AmlError(ValueError):
    """Input that is not AML at all (never raised for bad values inside an AML message).

    ``field`` names what gave it away (``A"ML`` for a missing header, ``body`` for an
    HTTPS body without AML fields); ``reason`` says why.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class AmlMessage:
    """One AML message, validated field by field.

    ``kind`` is ``"sms"``, ``"https"`` or ``"query-response"``; ``version`` is the header
    (SMS) or ``v`` (HTTPS) value, ``None`` when it is missing or unreadable. ``location``
    is set only when the location fields were all valid (then ``location_error`` is
    ``None``); ``lat``, ``lon`` and ``radius_m`` read from it. ``time`` is the time of
    the fix (v1 ``top``, v2 ``et + lt``, HTTPS ``location_time``), timezone-aware UTC.
    ``positioning_method`` is one of gps, wifi, cell, fused, unknown, none.
    ``confidence`` is the percentage chance that the handset is inside the radius.
    ``length`` is ``ml`` and ``length_matches`` whether it equals the text's length
    (``None`` without ``ml``). ``fields`` holds every raw key and value as received.
    """

    kind: str
    version: int | None
    location: Location | None
    location_error: str | None
    time: datetime | None = None
    positioning_method: str | None = None
    confidence: int | None = None
    imsi: str | None = None
    imei: str | None = None
    mcc: str | None = None
    mnc: str | None = None
    home_mcc: str | None = None
    home_mnc: str | None = None
    length: int | None = None
    length_matches: bool | None = None
    emergency_number: str | None = None
    call_time: datetime | None = None
    altitude_m: float | None = None
    vertical_accuracy_m: float | None = None
    languages: str | None = None
    device_number: str | None = None
    warnings: list[str]
    fields: dict[str, str]

    @property
    def lat(self) -> float | None:
        """Latitude of the fix, or ``None`` when there is no usable location."""
        return self.location.point.lat if self.location else None

    @property
    def lon(self) -> float | None:
        """Longitude of the fix, or ``None`` when there is no usable location."""
        return self.location.point.lon if self.location else None

    @property
    def radius_m(self) -> float | None:
        """Uncertainty radius in metres; ``None`` when unknown or without a location."""
        return self.location.radius_m if self.location else None

    def to_json(self) -> dict[str, Any]:
        """JSON-safe summary (times as ISO 8601), for a report's payload."""
        out: dict[str, Any] = {"lat": self.lat, "lon": self.lon, "radius_m": self.radius_m}
        for f in dataclasses.fields(self):
            if f.name == "location":
                continue
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        return out

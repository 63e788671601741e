"""A report as the core takes it from any gateway, and the answer the gateway gets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from dispatch.storable import clean_text, clean_tree
from geo.location import Location

# A fix time outside these bounds is a wrong clock, not a fix (year 1, the GPS epoch of
# 1980, a clock never set, year 2100): a "newer" one would win over every later real
# fix, and the oldest do not fit PostgreSQL. An old but plausible time is kept: it is
# what tells an old fix (and replayed samples keep theirs).
FIX_TIME_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
FIX_TIME_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class IncidentReport:
    """One report of an emergency, as a gateway normalised it.

    ``sender_keys`` identify who sent it (``tel:<last ten digits>``, ``device:<id>``):
    reports sharing a key within the window join one incident. ``silent`` marks a call
    on which nobody spoke (a pocket dial or a caller who cannot talk).
    """

    channel: str
    gateway_id: str
    external_id: str
    sender: str
    incident_type: str
    location: Location | None
    payload: dict[str, Any]
    warnings: tuple[str, ...] = ()
    sender_keys: tuple[str, ...] = ()
    silent: bool = False
    # The delivery as it came, kept byte for byte beside the cleaned ``payload``.
    raw: bytes | None = None
    raw_content_type: str | None = None

    @property
    def delivery_id(self) -> str:
        """The delivery's own identity, whatever Idempotency-Key it came under."""
        return f"{self.channel}:{self.external_id}"

    def storable(self, now: datetime) -> IncidentReport:
        """The report with nothing PostgreSQL cannot hold (see ``dispatch.storable``), and
        no fix time it cannot use: one before ``FIX_TIME_FLOOR`` or from the future (beyond
        a clock's skew) is dropped, and the fix counts as received ``now``."""
        warnings = self.warnings
        location = self.location
        if location is not None and location.time is not None:
            time = location.time if location.time.tzinfo else location.time.replace(tzinfo=UTC)
            if not FIX_TIME_FLOOR <= time <= now + FIX_TIME_SKEW:
                location = replace(location, time=None)
                warnings += (
                    f"location.time: {time.isoformat()} is not a time this fix"
                    " was taken; dropped (the fix counts as received now)",
                )
        return replace(
            self,
            external_id=clean_text(self.external_id),
            sender=clean_text(self.sender),
            location=location,
            payload=clean_tree(self.payload),
            warnings=tuple(clean_text(w) for w in warnings),
            sender_keys=tuple(clean_text(k) for k in self.sender_keys),
        )


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """The gateway's answer: which incident the report became or joined."""

    incident_id: int
    report_id: int
    status: str
    duplicate_of: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON body of the 202 answer."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IntakeResult:
        """Rebuild a stored answer."""
        return cls(**data)

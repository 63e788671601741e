"""Fields and units of AML: the patterns values must match, and a reader that validates
one message's raw fields, collecting warnings instead of raising.

Every number is matched against an ASCII pattern before conversion: Python's ``float``
and ``int`` also accept ``nan``, ``1_000`` and non-ASCII digits, none of which a handset
sends.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from gateways.aml.message import AmlError
from geo.location import InvalidLocation, Location, location_from_fix

# An HTTPS body or a query answer is at most a few kilobytes.
MAX_BODY_CHARS = 65536

DEGREES = re.compile(r"[+-]?[0-9]{1,3}(?:\.[0-9]{1,15})?")
METRES = re.compile(r"[0-9]{1,8}(?:\.[0-9]{1,15})?")
SIGNED_METRES = re.compile(r"[+-]?[0-9]{1,8}(?:\.[0-9]{1,15})?")
PERCENT = re.compile(r"[0-9]{1,3}")
PHONE = re.compile(r"\+?[0-9*#]{1,20}")
LANGUAGES = re.compile(
    r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*(?:,[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*)*"
)

# Positioning method letters (v1 ``pm``, v2 ``ls``) and HTTPS ``location_source`` words,
# normalised to one vocabulary that also names `Location.method`.
METHOD_LETTERS = {
    "G": "gps",
    "W": "wifi",
    "C": "cell",
    "F": "fused",
    "U": "unknown",
    "N": "none",
}
METHOD_WORDS = {
    "gps": "gps",
    "gnss": "gps",
    "wifi": "wifi",
    "cell": "cell",
    "fused": "fused",
    "unknown": "unknown",
}

# The newest fix time accepted from an epoch value (year 2100); beyond it is garbage.
MAX_EPOCH_S = 4_102_444_800


class NoLocation(Exception):
    """Internal: the location fields are unusable; the message says which and why."""


class Reader:
    """Validates the raw fields of one message, collecting warnings instead of raising."""

    def __init__(self, pairs: list[tuple[str, str]], warnings: list[str]) -> None:
        self.warnings = warnings
        self.fields: dict[str, str] = {}
        self.conflicts: set[str] = set()
        for key, value in pairs:
            if key in self.fields and self.fields[key] != value:
                self.conflicts.add(key)
            self.fields.setdefault(key, value)
        # Two different values for one key: either could be the wrong one, so neither is used.
        for key in sorted(self.conflicts):
            self.warn(key, "given more than once with different values; ignored")

    def warn(self, key: str, reason: str) -> None:
        """Add a warning that starts with the field's key."""
        self.warnings.append(f"{show_key(key)}: {reason}")

    def raw(self, key: str) -> str | None:
        """The value, or None when absent, empty or conflicting (already warned)."""
        if key in self.conflicts:
            return None
        value = self.fields.get(key)
        return value if value else None

    def matched(self, key: str, pattern: re.Pattern[str], what: str) -> str | None:
        """The value when it matches the pattern; else None, warned as not ``what``."""
        value = self.raw(key)
        if value is None:
            return None
        if pattern.fullmatch(value) is None:
            self.warn(key, f"{show(value)} is not {what}; ignored")
            return None
        return value

    def digits(self, key: str, low: int, high: int, what: str) -> str | None:
        """The value when it is ``low`` to ``high`` ASCII digits (kept as text)."""
        return self.matched(key, re.compile(f"[0-9]{{{low},{high}}}"), what)

    def percent(self, key: str) -> int | None:
        """A whole percentage 0..100."""
        value = self.matched(key, PERCENT, "a whole percentage")
        if value is None:
            return None
        if int(value) > 100:
            self.warn(key, f"{value} is more than 100 %; ignored")
            return None
        return int(value)

    def metres(self, key: str, what: str) -> float | None:
        """A distance in metres, not negative."""
        value = self.matched(key, METRES, what)
        return float(value) if value is not None else None

    def method(self, key: str, table: dict[str, str], expected: str) -> str | None:
        """A positioning method, by letter or word, in the one vocabulary of the table."""
        value = self.raw(key)
        if value is None:
            return None
        # Letters are keyed in upper case, words in lower case.
        method = table.get(value.upper(), table.get(value.lower()))
        if method is None:
            self.warn(key, f"{show(value)} is not a positioning method ({expected}); ignored")
        return method

    def epoch(self, key: str, *, per_second: int) -> datetime | None:
        """A Unix time (``per_second`` units a second) as UTC, up to the year 2100."""
        value = self.matched(key, re.compile(r"[0-9]{1,16}"), "a Unix time")
        if value is None:
            return None
        seconds = int(value) / per_second
        if seconds > MAX_EPOCH_S:
            self.warn(key, f"{value} is not a plausible Unix time; ignored")
            return None
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)

    def mcc_mnc(self, key: str) -> tuple[str | None, str | None]:
        """A country code and network code written together (v2 ``nc``, ``hc``)."""
        value = self.digits(key, 5, 6, "MCC and MNC run together (5 or 6 digits)")
        return (value[:3], value[3:]) if value else (None, None)

    def length(self, text: str) -> tuple[int | None, bool | None]:
        """The ``ml`` length field and whether it equals the length of ``text``."""
        value = self.digits("ml", 1, 5, "a message length")
        if value is None:
            return None, None
        if int(value) != len(text):
            self.warn(
                "ml",
                f"the length field says {int(value)} but the message has {len(text)}"
                " characters; the message is kept (published examples are off by one)",
            )
        return int(value), int(value) == len(text)

    def unknown_keys(self, known: frozenset[str]) -> None:
        """Warn about every key the message form does not define."""
        for key in self.fields:
            if key not in known:
                self.warn(key, "unknown field; ignored")

    def coordinate(self, key: str, value: str | None, *, limit: float, name: str) -> float:
        """A latitude or longitude, or NoLocation naming the field."""
        if key in self.conflicts:
            raise NoLocation(f"{key}: given more than once with different values")
        if value is None:
            raise NoLocation(f"{key}: {name} missing")
        if DEGREES.fullmatch(value) is None:
            raise NoLocation(f"{key}: {show(value)} is not a {name} in decimal degrees")
        number = float(value)
        if abs(number) > limit:
            raise NoLocation(f"{key}: {name} {value} is outside -{limit:g}..{limit:g}")
        return number


def to_location(
    keys: str,
    lat: float,
    lon: float,
    radius: float | None,
    method: str | None,
    time: datetime | None,
) -> Location:
    """A Location from valid coordinates, or NoLocation naming ``keys`` (e.g. 0,0)."""
    try:
        return location_from_fix(
            lat=lat, lon=lon, radius_m=radius, method=method or "unknown", time=time
        )
    except InvalidLocation as err:
        raise NoLocation(f"{keys}: {err}") from err


def text_of(body: str | bytes) -> str:
    """A body as text: UTF-8 and at most MAX_BODY_CHARS, else AmlError."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise AmlError("body", "not UTF-8 text") from err
    if len(body) > MAX_BODY_CHARS:
        raise AmlError("body", f"{len(body)} characters is too long for an AML body")
    return body


def show(value: str) -> str:
    """A value quoted for a warning, cut short: warnings must stay readable."""
    return repr(value if len(value) <= 40 else value[:37] + "...")


def show_key(key: str) -> str:
    """A key as it is written when it looks like one, else quoted like a value."""
    return key if re.fullmatch(r"[A-Za-z_\"]{1,30}", key) else show(key)

"""Advanced Mobile Location (ETSI TS 103 625): SMS v1, SMS v2 and HTTPS. Pure: no I/O.

The contract every function here keeps, because a message to 112 is never thrown away
for its content:

- Anything recognisably AML becomes an `AmlMessage`, however broken its values. A value
  that fails validation is left out (``None``) with a warning that starts with the
  field's key and says why; the raw text of every field stays in `AmlMessage.fields`.
- Location is all or nothing. When the location fields (v1 ``lt``/``lg``, v2 ``lo``,
  HTTPS ``location_latitude``/``location_longitude``) are missing, malformed, out of
  range or the 0,0 placeholder, or the handset says it had no fix (``pm=N``),
  `AmlMessage.location` is ``None`` and `AmlMessage.location_error` names the field.
  Nothing is guessed. A bad radius, time or method only loses that value.
- A length field (``ml``) that disagrees with the text is a warning, not an error:
  published examples are off by one or two (``../shared/data/aml/README.md``).
- `AmlError` is raised only for input that is not AML at all; the SMS gateway then
  treats the text as an ordinary SMS.

Every number is matched against an ASCII pattern before conversion: Python's ``float``
and ``int`` also accept ``nan``, ``1_000`` and non-ASCII digits, none of which a handset
sends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from geo.location import InvalidLocation, Location, location_from_fix

# An AML SMS is about 130 characters; a concatenated SMS is at most a few kilobytes.
_MAX_SMS_CHARS = 1024
_MAX_BODY_CHARS = 65536

_HEADER = re.compile(r"A[\"'\u201c\u201d\u201e]?ML\s*=(.*)", re.IGNORECASE | re.DOTALL)
_DEGREES = re.compile(r"[+-]?[0-9]{1,3}(?:\.[0-9]{1,15})?")
_METRES = re.compile(r"[0-9]{1,8}(?:\.[0-9]{1,15})?")
_SIGNED_METRES = re.compile(r"[+-]?[0-9]{1,8}(?:\.[0-9]{1,15})?")
_PERCENT = re.compile(r"[0-9]{1,3}")
_TOP = re.compile(r"[0-9]{14}")
_PHONE = re.compile(r"\+?[0-9*#]{1,20}")
_LANGUAGES = re.compile(
    r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*(?:,[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*)*"
)
_HEX_SHA1 = re.compile(rb"[0-9a-fA-F]{40}")

# Positioning method letters (v1 ``pm``, v2 ``ls``) and HTTPS ``location_source`` words,
# normalised to one vocabulary that also names `Location.method`.
_METHOD_LETTERS = {
    "G": "gps",
    "W": "wifi",
    "C": "cell",
    "F": "fused",
    "U": "unknown",
    "N": "none",
}
_METHOD_WORDS = {
    "gps": "gps",
    "gnss": "gps",
    "wifi": "wifi",
    "cell": "cell",
    "fused": "fused",
    "unknown": "unknown",
}

_V1_KEYS = frozenset({"lt", "lg", "rd", "top", "lc", "pm", "si", "ei", "mcc", "mnc", "ml"})
_V2_KEYS = frozenset({"en", "et", "lo", "lt", "lc", "lz", "ls", "ei", "nc", "hc", "lg", "ml"})
# Keys that only v1 has: with lt and lg they identify a v1 body whose header was lost.
_V1_ONLY_KEYS = frozenset({"rd", "top", "pm", "si", "mcc", "mnc"})

# The newest fix time accepted from an epoch value (year 2100); beyond it is garbage.
_MAX_EPOCH_S = 4_102_444_800


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


class _NoLocation(Exception):
    """Internal: the location fields are unusable; the message says which and why."""


class _Reader:
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
        self.warnings.append(f"{_show_key(key)}: {reason}")

    def raw(self, key: str) -> str | None:
        """The value, or None when absent, empty or conflicting (already warned)."""
        if key in self.conflicts:
            return None
        value = self.fields.get(key)
        return value if value else None

    def matched(self, key: str, pattern: re.Pattern[str], what: str) -> str | None:
        value = self.raw(key)
        if value is None:
            return None
        if pattern.fullmatch(value) is None:
            self.warn(key, f"{_show(value)} is not {what}; ignored")
            return None
        return value

    def digits(self, key: str, low: int, high: int, what: str) -> str | None:
        return self.matched(key, re.compile(f"[0-9]{{{low},{high}}}"), what)

    def percent(self, key: str) -> int | None:
        value = self.matched(key, _PERCENT, "a whole percentage")
        if value is None:
            return None
        if int(value) > 100:
            self.warn(key, f"{value} is more than 100 %; ignored")
            return None
        return int(value)

    def metres(self, key: str, what: str) -> float | None:
        value = self.matched(key, _METRES, what)
        return float(value) if value is not None else None

    def method(self, key: str, table: dict[str, str], expected: str) -> str | None:
        value = self.raw(key)
        if value is None:
            return None
        # Letters are keyed in upper case, words in lower case.
        method = table.get(value.upper(), table.get(value.lower()))
        if method is None:
            self.warn(key, f"{_show(value)} is not a positioning method ({expected}); ignored")
        return method

    def epoch(self, key: str, *, per_second: int) -> datetime | None:
        value = self.matched(key, re.compile(r"[0-9]{1,16}"), "a Unix time")
        if value is None:
            return None
        seconds = int(value) / per_second
        if seconds > _MAX_EPOCH_S:
            self.warn(key, f"{value} is not a plausible Unix time; ignored")
            return None
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)

    def mcc_mnc(self, key: str) -> tuple[str | None, str | None]:
        value = self.digits(key, 5, 6, "MCC and MNC run together (5 or 6 digits)")
        return (value[:3], value[3:]) if value else (None, None)

    def length(self, text: str) -> tuple[int | None, bool | None]:
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
        for key in self.fields:
            if key not in known:
                self.warn(key, "unknown field; ignored")

    def coordinate(self, key: str, value: str | None, *, limit: float, name: str) -> float:
        """A latitude or longitude, or _NoLocation naming the field."""
        if key in self.conflicts:
            raise _NoLocation(f"{key}: given more than once with different values")
        if value is None:
            raise _NoLocation(f"{key}: {name} missing")
        if _DEGREES.fullmatch(value) is None:
            raise _NoLocation(f"{key}: {_show(value)} is not a {name} in decimal degrees")
        number = float(value)
        if abs(number) > limit:
            raise _NoLocation(f"{key}: {name} {value} is outside -{limit:g}..{limit:g}")
        return number


def parse_aml_sms(text: str) -> AmlMessage:
    """Parse the text of an AML SMS (v1 ``A"ML=1;...`` or v2 ``A"ML=2;...``).

    Fields are read by key, never by position. A header written ``AML=1`` (no quote) or
    a v1 body whose header was lost (it has ``lt``, ``lg`` and a v1-only key such as
    ``top``, and nothing else) is still read, with a warning. A version other than 1 or
    2 gives no location: v2 reused ``lt`` and ``lg`` for other things, so the meaning of
    the keys cannot be assumed. Raises AmlError only when the text is not AML at all.
    """
    body = text.strip()
    if not body:
        raise AmlError('A"ML', "empty text")
    if len(body) > _MAX_SMS_CHARS:
        raise AmlError('A"ML', f"{len(body)} characters is too long for an AML SMS")
    segments = body.split(";")
    warnings: list[str] = []
    header = _HEADER.fullmatch(segments[0].strip())
    if header is None:
        reader = _Reader(_pairs(segments, warnings), warnings)
        if not _headerless_v1(reader, segments):
            raise AmlError('A"ML', 'the text does not start with the AML header A"ML=')
        warnings.insert(0, 'A"ML: header missing; read as version 1 from its keys')
        return _sms_v1(body, reader, version=None)
    if not segments[0].startswith('A"ML'):
        warnings.append(f'A"ML: header written {_show(segments[0])} instead of A"ML=<version>')
    reader = _Reader(_pairs(segments[1:], warnings), warnings)
    version_text = header.group(1).strip()
    if version_text == "1":
        return _sms_v1(body, reader, version=1)
    if version_text == "2":
        return _sms_v2(body, reader)
    return AmlMessage(
        kind="sms",
        version=int(version_text) if re.fullmatch(r"[0-9]{1,3}", version_text) else None,
        location=None,
        location_error=f'A"ML: version {_show(version_text)} is not supported (1 or 2);'
        " its location is not read",
        warnings=warnings,
        fields=reader.fields,
    )


def _pairs(segments: list[str], warnings: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    empty = 0
    for index, segment in enumerate(segments):
        if not segment.strip():
            # One trailing ';' is harmless; empty fields elsewhere are worth a word.
            empty += index != len(segments) - 1
            continue
        key, sep, value = segment.partition("=")
        if not sep or not key.strip():
            warnings.append(f"{_show(segment)}: not a key=value field; ignored")
            continue
        pairs.append((key.strip(), value.strip()))
    if empty:
        warnings.append(f"{empty} empty field(s) between ';' ignored")
    return pairs


def _headerless_v1(reader: _Reader, segments: list[str]) -> bool:
    keys = set(reader.fields)
    well_formed = all("=" in s for s in segments if s.strip())
    return well_formed and {"lt", "lg"} <= keys and bool(keys & _V1_ONLY_KEYS) and keys <= _V1_KEYS


def _sms_v1(body: str, r: _Reader, *, version: int | None) -> AmlMessage:
    r.unknown_keys(_V1_KEYS)
    method = r.method("pm", _METHOD_LETTERS, "G, W, C or N")
    time = _top(r)
    rd = r.raw("rd")
    # rd=N is how handsets say "no accuracy" (GridGears maps it to null).
    radius = None if rd is not None and rd.upper() == "N" else r.metres("rd", "a radius in metres")
    location: Location | None = None
    error: str | None = None
    try:
        if method == "none":
            raise _NoLocation("pm: N, the handset reported that it had no position fix")
        lat = r.coordinate("lt", r.raw("lt"), limit=90, name="latitude")
        lon = r.coordinate("lg", r.raw("lg"), limit=180, name="longitude")
        location = _fix("lt/lg", lat, lon, radius, method, time)
    except _NoLocation as err:
        error = str(err)
    if location is not None and radius is None:
        r.warn("rd", "no radius given; the uncertainty of the location is unknown")
    length, matches = r.length(body)
    return AmlMessage(
        kind="sms",
        version=version,
        location=location,
        location_error=error,
        time=time,
        positioning_method=method,
        confidence=r.percent("lc"),
        imsi=r.digits("si", 5, 15, "an IMSI (up to 15 digits)"),
        imei=r.digits("ei", 14, 16, "an IMEI (14 to 16 digits)"),
        mcc=r.digits("mcc", 3, 3, "a mobile country code (3 digits)"),
        mnc=r.digits("mnc", 2, 3, "a mobile network code (2 or 3 digits)"),
        length=length,
        length_matches=matches,
        warnings=r.warnings,
        fields=r.fields,
    )


def _top(r: _Reader) -> datetime | None:
    value = r.matched("top", _TOP, "a time of positioning YYYYMMDDhhmmss")
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        r.warn("top", f"{value} is not a valid date and time; ignored")
        return None


def _sms_v2(body: str, r: _Reader) -> AmlMessage:
    r.unknown_keys(_V2_KEYS)
    method = r.method("ls", _METHOD_LETTERS, "G, W, C, F or U")
    call_time = r.epoch("et", per_second=1)
    # In v2, lt is the fix time in seconds relative to et (not a latitude).
    offset = r.matched("lt", re.compile(r"[+-]?[0-9]{1,9}"), "a time offset in seconds")
    time: datetime | None = None
    if offset is not None:
        if call_time is None:
            r.warn("lt", "location time offset ignored without a call time (et)")
        else:
            time = call_time + timedelta(seconds=int(offset))
    location: Location | None = None
    error: str | None = None
    try:
        location = _v2_location(r, method, time)
    except _NoLocation as err:
        error = str(err)
    altitude, vertical = _v2_altitude(r)
    length, matches = r.length(body)
    network_mcc, network_mnc = r.mcc_mnc("nc")
    home_mcc, home_mnc = r.mcc_mnc("hc")
    return AmlMessage(
        kind="sms",
        version=2,
        location=location,
        location_error=error,
        time=time,
        positioning_method=method,
        confidence=r.percent("lc"),
        imei=r.digits("ei", 14, 16, "an IMEI (14 to 16 digits)"),
        mcc=network_mcc,
        mnc=network_mnc,
        home_mcc=home_mcc,
        home_mnc=home_mnc,
        length=length,
        length_matches=matches,
        emergency_number=r.matched("en", _PHONE, "a dialled number"),
        call_time=call_time,
        altitude_m=altitude,
        vertical_accuracy_m=vertical,
        languages=r.matched("lg", _LANGUAGES, "a list of language tags"),
        warnings=r.warnings,
        fields=r.fields,
    )


def _v2_location(r: _Reader, method: str | None, time: datetime | None) -> Location:
    if "lo" in r.conflicts:
        raise _NoLocation("lo: given more than once with different values")
    value = r.raw("lo")
    if value is None:
        raise _NoLocation("lo: location missing")
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (2, 3):
        raise _NoLocation(f"lo: {_show(value)} is not latitude,longitude,accuracy")
    lat = r.coordinate("lo", parts[0], limit=90, name="latitude")
    lon = r.coordinate("lo", parts[1], limit=180, name="longitude")
    radius: float | None = None
    if len(parts) == 3 and _METRES.fullmatch(parts[2]):
        # An accuracy of 0 means "unknown" in v2, not a perfect fix.
        radius = float(parts[2]) or None
    elif len(parts) == 3:
        r.warn("lo", f"accuracy {_show(parts[2])} is not in metres; ignored")
    if radius is None:
        r.warn("lo", "no accuracy given; the uncertainty of the location is unknown")
    return _fix("lo", lat, lon, radius, method, time)


def _v2_altitude(r: _Reader) -> tuple[float | None, float | None]:
    value = r.raw("lz")
    if value is None:
        return None, None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) == 2 and _SIGNED_METRES.fullmatch(parts[0]) and _METRES.fullmatch(parts[1]):
        return float(parts[0]), float(parts[1])
    r.warn("lz", f"{_show(value)} is not altitude,vertical accuracy in metres; ignored")
    return None, None


def parse_aml_https(body: str | bytes) -> AmlMessage:
    """Parse an HTTPS AML POST body (``application/x-www-form-urlencoded``, ``v=1..3``).

    Every field is optional (Google's ELS http-spec); empty values count as absent.
    ``location_time`` and ``time`` are Unix milliseconds. ``location_certainty`` is a
    percentage; ``location_confidence`` a fraction 0..1. The ``hmac`` field is not
    checked here: see `verify_aml_https_hmac`. Raises AmlError when the body is not
    form-encoded text or has none of ``v``, ``device_number``, ``location_latitude``,
    ``location_longitude``.
    """
    text = _text(body)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=500)
    except ValueError as err:
        raise AmlError("body", f"not a form-encoded AML body: {err}") from err
    keys = {key for key, _ in pairs}
    # The caller's number alone is a report to keep (its location then missing, warned).
    if not keys & {"v", "location_latitude", "location_longitude", "device_number"}:
        raise AmlError(
            "body", "no AML fields (v, device_number, location_latitude, location_longitude)"
        )
    warnings: list[str] = []
    r = _Reader([(k, v.strip()) for k, v in pairs], warnings)
    version = r.digits("v", 1, 3, "a version number")
    method = r.method("location_source", _METHOD_WORDS, "gps, wifi, cell or unknown")
    time = r.epoch("location_time", per_second=1000)
    radius = r.metres("location_accuracy", "an accuracy in metres")
    location: Location | None = None
    error: str | None = None
    try:
        lat = r.coordinate(
            "location_latitude", r.raw("location_latitude"), limit=90, name="latitude"
        )
        lon = r.coordinate(
            "location_longitude", r.raw("location_longitude"), limit=180, name="longitude"
        )
        location = _fix("location_latitude/location_longitude", lat, lon, radius, method, time)
    except _NoLocation as err:
        error = str(err)
    altitude = r.matched("location_altitude", _SIGNED_METRES, "an altitude in metres")
    return AmlMessage(
        kind="https",
        version=int(version) if version else None,
        location=location,
        location_error=error,
        time=time,
        positioning_method=method,
        confidence=_https_confidence(r),
        imsi=r.digits("device_imsi", 5, 15, "an IMSI (up to 15 digits)"),
        imei=r.digits("device_imei", 14, 16, "an IMEI (14 to 16 digits)"),
        mcc=r.digits("cell_network_mcc", 3, 3, "a mobile country code (3 digits)"),
        mnc=r.digits("cell_network_mnc", 2, 3, "a mobile network code (2 or 3 digits)"),
        home_mcc=r.digits("cell_home_mcc", 3, 3, "a mobile country code (3 digits)"),
        home_mnc=r.digits("cell_home_mnc", 2, 3, "a mobile network code (2 or 3 digits)"),
        emergency_number=r.matched("emergency_number", _PHONE, "a dialled number"),
        call_time=r.epoch("time", per_second=1000),
        altitude_m=float(altitude) if altitude is not None else None,
        vertical_accuracy_m=r.metres("location_vertical_accuracy", "an accuracy in metres"),
        languages=r.matched("device_languages", _LANGUAGES, "a list of language tags"),
        device_number=r.matched("device_number", _PHONE, "a phone number"),
        warnings=warnings,
        fields=r.fields,
    )


def _https_confidence(r: _Reader) -> int | None:
    if r.raw("location_certainty") is not None:
        return r.percent("location_certainty")
    value = r.matched(
        "location_confidence", re.compile(r"0(?:\.[0-9]{1,15})?|1(?:\.0{1,15})?"), "0..1"
    )
    return round(float(value) * 100) if value is not None else None


def verify_aml_https_hmac(body: str | bytes, key: str | bytes) -> bool:
    """Whether an HTTPS AML body ends with a correct ``&hmac=<40 hex digits>``.

    The HMAC is SHA-1 (as the AML HTTPS format specifies) over every byte before
    ``&hmac=``. False when the field is missing or malformed; never raises.
    """
    raw = body.encode() if isinstance(body, str) else body
    secret = key.encode() if isinstance(key, str) else key
    signed, sep, given = raw.rpartition(b"&hmac=")
    given = given.strip()
    if not sep or _HEX_SHA1.fullmatch(given) is None:
        return False
    expected = hmac.new(secret, signed, hashlib.sha1).hexdigest()
    return hmac.compare_digest(expected, given.decode("ascii").lower())


def parse_aml_query_response(body: str | bytes) -> AmlMessage:
    """Parse the JSON a PSAP gets when it queries an AML endpoint for a caller.

    The body is a list of fixes (``location_latitude``, ``location_longitude``,
    ``location_accuracy``, ``location_source``, ``location_time``, ``status``), numbers
    either JSON numbers or strings. The usable fix with the smallest accuracy is the
    location; each unusable one adds a warning. A ``location_time`` without a timezone
    is not used (the endpoint's local time is unknown). Raises AmlError when the body is
    not JSON or not a list of such objects.
    """
    text = _text(body)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise AmlError("body", f"not JSON: {err}") from err
    fixes = [data] if isinstance(data, dict) else data
    if (
        not isinstance(fixes, list)
        or not fixes
        or not all(isinstance(f, dict) for f in fixes)
        or not any({"status", "location_latitude"} & f.keys() for f in fixes)
    ):
        raise AmlError("body", "not a list of AML fixes")
    warnings: list[str] = []
    usable: list[tuple[Location, str | None, dict[str, str]]] = []
    problems: list[str] = []
    for number, fix in enumerate(fixes, start=1):
        raw = {str(k): _json_text(v) for k, v in fix.items()}
        fix_warnings: list[str] = []
        r = _Reader(list(raw.items()), fix_warnings)
        status = r.raw("status")
        if status is not None and status.lower() != "ok":
            problems.append(f"fix {number}: status: {_show(status)}")
            continue
        method = r.method("location_source", _METHOD_WORDS, "gps, wifi, cell or unknown")
        try:
            lat = r.coordinate(
                "location_latitude", r.raw("location_latitude"), limit=90, name="latitude"
            )
            lon = r.coordinate(
                "location_longitude", r.raw("location_longitude"), limit=180, name="longitude"
            )
            radius = r.metres("location_accuracy", "an accuracy in metres")
            location = _fix(
                "location_latitude/location_longitude", lat, lon, radius, method, _query_time(r)
            )
        except _NoLocation as err:
            problems.append(f"fix {number}: {err}")
            continue
        warnings.extend(f"fix {number}: {w}" for w in fix_warnings)
        usable.append((location, method, raw))
    warnings.extend(problems)
    if not usable:
        return AmlMessage(
            kind="query-response",
            version=None,
            location=None,
            location_error="; ".join(problems) or "no fix in the response",
            warnings=warnings,
            fields={},
        )
    # Unknown accuracy ranks after every known one: it is not better than any of them.
    best, best_method, best_raw = min(
        usable, key=lambda u: (u[0].radius_m is None, u[0].radius_m or 0.0)
    )
    return AmlMessage(
        kind="query-response",
        version=None,
        location=best,
        location_error=None,
        time=best.time,
        positioning_method=best_method,
        warnings=warnings,
        fields=best_raw,
    )


def _query_time(r: _Reader) -> datetime | None:
    value = r.raw("location_time")
    if value is None:
        return None
    if re.fullmatch(r"[0-9]{1,16}", value):
        return r.epoch("location_time", per_second=1000)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        r.warn("location_time", f"{_show(value)} is not a time; ignored")
        return None
    if parsed.tzinfo is None:
        r.warn("location_time", f"{_show(value)} has no timezone; ignored")
        return None
    return parsed.astimezone(UTC)


def _fix(
    keys: str,
    lat: float,
    lon: float,
    radius: float | None,
    method: str | None,
    time: datetime | None,
) -> Location:
    try:
        return location_from_fix(
            lat=lat, lon=lon, radius_m=radius, method=method or "unknown", time=time
        )
    except InvalidLocation as err:
        raise _NoLocation(f"{keys}: {err}") from err


def _text(body: str | bytes) -> str:
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise AmlError("body", "not UTF-8 text") from err
    if len(body) > _MAX_BODY_CHARS:
        raise AmlError("body", f"{len(body)} characters is too long for an AML body")
    return body


def _json_text(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        # repr keeps every digit; JSON has no nan/inf, so the patterns see plain numbers.
        return repr(value)
    return json.dumps(value)[:100]


def _show(value: str) -> str:
    """A value quoted for a warning, cut short: warnings must stay readable."""
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _show_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z_\"]{1,30}", key) else _show(key)

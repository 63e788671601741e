"""AML in an SMS: the text form ``A"ML=1;lt=...`` (v1) and ``A"ML=2;lo=...`` (v2)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from gateways.aml.fields import (
    LANGUAGES,
    METHOD_LETTERS,
    METRES,
    PHONE,
    SIGNED_METRES,
    NoLocation,
    Reader,
    show,
    to_location,
)
from gateways.aml.message import AmlError, AmlMessage
from geo.location import Location

# An AML SMS is about 130 characters; a concatenated SMS is at most a few kilobytes.
_MAX_SMS_CHARS = 1024

_HEADER = re.compile(r"A[\"'\u201c\u201d\u201e]?ML\s*=(.*)", re.IGNORECASE | re.DOTALL)
_TOP = re.compile(r"[0-9]{14}")

_V1_KEYS = frozenset({"lt", "lg", "rd", "top", "lc", "pm", "si", "ei", "mcc", "mnc", "ml"})
_V2_KEYS = frozenset({"en", "et", "lo", "lt", "lc", "lz", "ls", "ei", "nc", "hc", "lg", "ml"})
# Keys that only v1 has: with lt and lg they identify a v1 body whose header was lost.
_V1_ONLY_KEYS = frozenset({"rd", "top", "pm", "si", "mcc", "mnc"})


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
        reader = Reader(_pairs(segments, warnings), warnings)
        if not _headerless_v1(reader, segments):
            raise AmlError('A"ML', 'the text does not start with the AML header A"ML=')
        warnings.insert(0, 'A"ML: header missing; read as version 1 from its keys')
        return _sms_v1(body, reader, version=None)
    if not segments[0].startswith('A"ML'):
        warnings.append(f'A"ML: header written {show(segments[0])} instead of A"ML=<version>')
    reader = Reader(_pairs(segments[1:], warnings), warnings)
    version_text = header.group(1).strip()
    if version_text == "1":
        return _sms_v1(body, reader, version=1)
    if version_text == "2":
        return _sms_v2(body, reader)
    return AmlMessage(
        kind="sms",
        version=int(version_text) if re.fullmatch(r"[0-9]{1,3}", version_text) else None,
        location=None,
        location_error=f'A"ML: version {show(version_text)} is not supported (1 or 2);'
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
            warnings.append(f"{show(segment)}: not a key=value field; ignored")
            continue
        pairs.append((key.strip(), value.strip()))
    if empty:
        warnings.append(f"{empty} empty field(s) between ';' ignored")
    return pairs


def _headerless_v1(reader: Reader, segments: list[str]) -> bool:
    keys = set(reader.fields)
    well_formed = all("=" in s for s in segments if s.strip())
    return well_formed and {"lt", "lg"} <= keys and bool(keys & _V1_ONLY_KEYS) and keys <= _V1_KEYS


def _sms_v1(body: str, r: Reader, *, version: int | None) -> AmlMessage:
    r.unknown_keys(_V1_KEYS)
    method = r.method("pm", METHOD_LETTERS, "G, W, C or N")
    time = _top(r)
    rd = r.raw("rd")
    # rd=N is how handsets say "no accuracy" (GridGears maps it to null).
    radius = None if rd is not None and rd.upper() == "N" else r.metres("rd", "a radius in metres")
    location: Location | None = None
    error: str | None = None
    try:
        if method == "none":
            raise NoLocation("pm: N, the handset reported that it had no position fix")
        lat = r.coordinate("lt", r.raw("lt"), limit=90, name="latitude")
        lon = r.coordinate("lg", r.raw("lg"), limit=180, name="longitude")
        location = to_location("lt/lg", lat, lon, radius, method, time)
    except NoLocation as err:
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


def _top(r: Reader) -> datetime | None:
    value = r.matched("top", _TOP, "a time of positioning YYYYMMDDhhmmss")
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        r.warn("top", f"{value} is not a valid date and time; ignored")
        return None


def _sms_v2(body: str, r: Reader) -> AmlMessage:
    r.unknown_keys(_V2_KEYS)
    method = r.method("ls", METHOD_LETTERS, "G, W, C, F or U")
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
    except NoLocation as err:
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
        emergency_number=r.matched("en", PHONE, "a dialled number"),
        call_time=call_time,
        altitude_m=altitude,
        vertical_accuracy_m=vertical,
        languages=r.matched("lg", LANGUAGES, "a list of language tags"),
        warnings=r.warnings,
        fields=r.fields,
    )


def _v2_location(r: Reader, method: str | None, time: datetime | None) -> Location:
    if "lo" in r.conflicts:
        raise NoLocation("lo: given more than once with different values")
    value = r.raw("lo")
    if value is None:
        raise NoLocation("lo: location missing")
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (2, 3):
        raise NoLocation(f"lo: {show(value)} is not latitude,longitude,accuracy")
    lat = r.coordinate("lo", parts[0], limit=90, name="latitude")
    lon = r.coordinate("lo", parts[1], limit=180, name="longitude")
    radius: float | None = None
    if len(parts) == 3 and METRES.fullmatch(parts[2]):
        # An accuracy of 0 means "unknown" in v2, not a perfect fix.
        radius = float(parts[2]) or None
    elif len(parts) == 3:
        r.warn("lo", f"accuracy {show(parts[2])} is not in metres; ignored")
    if radius is None:
        r.warn("lo", "no accuracy given; the uncertainty of the location is unknown")
    return to_location("lo", lat, lon, radius, method, time)


def _v2_altitude(r: Reader) -> tuple[float | None, float | None]:
    value = r.raw("lz")
    if value is None:
        return None, None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) == 2 and SIGNED_METRES.fullmatch(parts[0]) and METRES.fullmatch(parts[1]):
        return float(parts[0]), float(parts[1])
    r.warn("lz", f"{show(value)} is not altitude,vertical accuracy in metres; ignored")
    return None, None

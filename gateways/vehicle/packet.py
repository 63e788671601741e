"""AIS-140 device packets (the common text format of India's vehicle trackers). Pure.

A packet is comma-separated text between ``$`` and ``*`` (a checksum may follow the
``*``). Four layouts are in use, told apart by their fields, not by a vendor's header:

- tracking / alert: ``$Header,vendor,firmware,TYPE,alert_id,L|H,IMEI,registration,
  fix,date,time,lat,N|S,lon,E|W,speed,heading,satellites,altitude,pdop,hdop,operator,
  ignition,main_power,main_voltage,battery_voltage,emergency_status,tamper,...``
  (TYPE: ``NR`` normal, ``EA`` emergency, ``TA`` tamper, ``HP`` health, ``IN``/``IF``
  ignition, ``BD``/``BR``/``BL`` battery, ``HB``/``HA``/``RT``/``OS`` driving ...; some
  devices split the date and time into six fields, or leave out the alert id);
- emergency: ``$Header,EPB,EMR|SEM,IMEI,NM|SP,ddmmyyyyhhmmss,A|V,lat,N|S,lon,E|W,
  altitude,speed,distance,G|N,registration,reply_number`` (``EMR`` pressed, ``SEM``
  stopped; ``SP`` a stored packet sent late);
- login: ``$LGN,...,IMEI,...`` or a ``01`` header, or ``AIS140`` as the protocol field;
- health / heartbeat: a ``02``, ``HP``, ``HLM`` or ``HBT`` header.

A packet that cannot be read raises PacketError saying why; a field that cannot be used
(a broken position, a date that is no date) is dropped with a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from dispatch.vehicles import normalise_registration

PacketKind = Literal["emergency", "emergency_off", "tamper", "login", "health", "tracking"]

_IMEI = re.compile(r"[0-9]{15}")
# An Indian registration: state, district, series, number (MH12AB1234, DL3CAB1021), or
# the Bharat series (22BH1234AA).
_REGISTRATION = re.compile(r"[A-Z]{2}[0-9]{1,2}[A-Z]{0,3}[0-9]{1,4}|[0-9]{2}BH[0-9]{4}[A-Z]{1,2}")
_EMERGENCY_TYPES = frozenset({"EA"})
# TA tamper alert, WD (emergency-button) wire disconnected, DT device tamper, BO box open.
_TAMPER_TYPES = frozenset({"TA", "WD", "DT", "BO"})
# Alert ids of the AIS-140 table that matter here, whatever the type code says.
_EMERGENCY_ON, _EMERGENCY_OFF = 10, 11
_TAMPER_IDS = frozenset({9, 16})
_LOGIN_HEADERS = frozenset({"LGN", "LOGIN", "01"})
_HEALTH_HEADERS = frozenset({"HP", "HLM", "HBT", "HEALTH", "02"})
_MAX_PACKET = 4000


class PacketError(ValueError):
    """A packet that cannot be read as AIS-140; the message says why."""


@dataclass(frozen=True, slots=True)
class Fix:
    """The position a packet carries. ``valid`` is False when the device says it had no
    current GPS fix (the position is then its last known one)."""

    lat: float
    lon: float
    valid: bool
    time: datetime | None = None
    speed_kmh: float | None = None
    heading_deg: float | None = None
    hdop: float | None = None


@dataclass(frozen=True, slots=True)
class DevicePacket:
    """One decoded packet."""

    kind: PacketKind
    layout: Literal["tracking", "emergency", "login", "health"]
    imei: str | None
    registration: str | None
    type_code: str | None
    alert_id: int | None
    # A packet the device stored while it had no network and sends late.
    stored: bool
    fix: Fix | None
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """What was read, as kept in the report's payload."""
        fix = self.fix
        return {
            "kind": self.kind,
            "layout": self.layout,
            "imei": self.imei,
            "registration": self.registration,
            "type_code": self.type_code,
            "alert_id": self.alert_id,
            "stored": self.stored,
            "fix": None
            if fix is None
            else {
                "lat": fix.lat,
                "lon": fix.lon,
                "valid": fix.valid,
                "time": fix.time.isoformat() if fix.time else None,
                "speed_kmh": fix.speed_kmh,
                "heading_deg": fix.heading_deg,
                "hdop": fix.hdop,
            },
            "warnings": list(self.warnings),
        }


def decode_packet(text: str) -> DevicePacket:
    """Decode one AIS-140 packet; PacketError when it is not one."""
    fields = _fields(text)
    imei_at = next((i for i, f in enumerate(fields) if _IMEI.fullmatch(f)), None)
    before = fields if imei_at is None else fields[:imei_at]
    if "EMR" in before or "SEM" in before:
        return _emergency(fields, imei_at)
    if imei_at is None:
        if any(f in _EMERGENCY_TYPES for f in fields[:8]):
            # An emergency whose device cannot be named is still an emergency.
            return DevicePacket(
                "emergency",
                "tracking",
                None,
                None,
                "EA",
                None,
                False,
                None,
                (
                    "imei: no 15-digit IMEI in the packet; the alert cannot be joined to"
                    " its vehicle's other alerts",
                ),
            )
        raise PacketError("no 15-digit IMEI in the packet: it cannot tell which device sent it")
    if imei_at >= 2 and fields[imei_at - 1] in ("L", "H"):
        return _tracking(fields, imei_at)
    header = {f for f in fields[:2] if f}
    if header & _LOGIN_HEADERS or "AIS140" in fields[imei_at:]:
        return _login(fields, imei_at)
    if header & _HEALTH_HEADERS:
        return DevicePacket("health", "health", fields[imei_at], None, None, None, False, None)
    raise PacketError(
        "not a known AIS-140 layout (tracking/alert, emergency, login or health): expected"
        " L or H before the IMEI, EMR or SEM, or a login or health header"
    )


def _fields(text: str) -> list[str]:
    if len(text) > _MAX_PACKET:
        raise PacketError(f"longer than {_MAX_PACKET} characters: not one AIS-140 packet")
    if "\n" in text.strip() or "\r" in text.strip():
        raise PacketError("more than one line: post one packet per request")
    start = text.find("$")
    if start < 0:
        raise PacketError("no '$': an AIS-140 packet starts with '$'")
    body = text[start + 1 :]
    end = body.find("*")
    if end >= 0:
        body = body[:end]
    body = body.strip()
    return [f.strip() for f in body.split(",")]


def _tracking(fields: list[str], imei_at: int) -> DevicePacket:
    warnings: list[str] = []
    stored = fields[imei_at - 1] == "H"
    alert_id: int | None = None
    code_at = imei_at - 2
    if fields[code_at].isdigit() and code_at >= 1:
        alert_id = int(fields[code_at])
        code_at -= 1
    code = fields[code_at].upper()
    registration = normalise_registration(fields[imei_at + 1] if imei_at + 1 < len(fields) else "")
    fix, after = _position(fields, imei_at + 2, warnings, layout="tracking")
    # speed, heading, satellites, altitude, pdop, hdop, network operator, ignition, main
    # power, main voltage, battery voltage, then the emergency status.
    emergency_flag = _field(fields, after + 15) if after is not None else None
    if code in _EMERGENCY_TYPES and alert_id == _EMERGENCY_OFF:
        kind: PacketKind = "emergency_off"
    elif code in _EMERGENCY_TYPES or alert_id == _EMERGENCY_ON:
        kind = "emergency"
    elif code in _TAMPER_TYPES or alert_id in _TAMPER_IDS:
        kind = "tamper"
    elif code == "HP":
        kind = "health"
    elif emergency_flag == "1":
        # The device says it is in the emergency state (the button was pressed and not
        # reset): an emergency, whatever the packet's own reason to be sent.
        kind = "emergency"
        warnings.append("emergency_status: 1 on a non-alert packet; read as an emergency")
    else:
        kind = "tracking"
    return DevicePacket(
        kind,
        "tracking",
        fields[imei_at],
        registration,
        code,
        alert_id,
        stored,
        fix,
        tuple(warnings),
    )


def _emergency(fields: list[str], imei_at: int | None) -> DevicePacket:
    warnings: list[str] = []
    code = "SEM" if "SEM" in fields[: imei_at or len(fields)] else "EMR"
    kind: PacketKind = "emergency_off" if code == "SEM" else "emergency"
    if imei_at is None:
        warnings.append(
            "imei: no 15-digit IMEI in the packet; the alert cannot be joined to its"
            " vehicle's other alerts"
        )
        return DevicePacket(kind, "emergency", None, None, code, None, False, None, tuple(warnings))
    stored = _field(fields, imei_at + 1) == "SP"
    fix, after = _position(fields, imei_at + 2, warnings, layout="emergency")
    registration = None
    if after is not None:
        # altitude, speed, distance, provider, then the registration.
        registration = normalise_registration(_field(fields, after + 8) or "")
        speed = _number(_field(fields, after + 5), "speed", warnings)
        if fix is not None and speed is not None:
            fix = Fix(fix.lat, fix.lon, fix.valid, fix.time, speed_kmh=speed)
    return DevicePacket(
        kind, "emergency", fields[imei_at], registration, code, None, stored, fix, tuple(warnings)
    )


def _login(fields: list[str], imei_at: int) -> DevicePacket:
    near = [_field(fields, imei_at + 1), _field(fields, imei_at - 1)]
    registration = next(
        (
            r
            for r in (normalise_registration(f or "") for f in near)
            if r and _REGISTRATION.fullmatch(r)
        ),
        None,
    )
    warnings: list[str] = []
    fix = None
    anchor = _anchor(fields, imei_at + 1)
    if anchor is not None:
        fix = _coordinates(fields, anchor, True, None, warnings)
    return DevicePacket(
        "login", "login", fields[imei_at], registration, "LGN", None, False, fix, tuple(warnings)
    )


def _position(
    fields: list[str], start: int, warnings: list[str], *, layout: str
) -> tuple[Fix | None, int | None]:
    """The fix found from ``start`` on, and the index of its latitude (None: none)."""
    anchor = _anchor(fields, start)
    if anchor is None:
        warnings.append("position: no latitude,N|S,longitude,E|W in the packet; dropped")
        return None, None
    between = fields[start:anchor]
    # The fix flag is the field after the registration (1/0), or the one before the
    # latitude (A/V); some devices send both, and the one nearer the position wins.
    flag: str | None = None
    if between and between[0] in ("0", "1", "A", "V"):
        flag, between = between[0], between[1:]
    if between and between[-1] in ("0", "1", "A", "V"):
        flag, between = between[-1], between[:-1]
    valid = flag in ("1", "A")
    if flag is None:
        warnings.append("fix: the packet does not say whether its position is a current fix")
    digits = "".join(between)
    time = _time(digits, warnings)
    fix = _coordinates(fields, anchor, valid, time, warnings)
    if fix is not None and layout == "tracking":
        fix = Fix(
            fix.lat,
            fix.lon,
            fix.valid,
            fix.time,
            speed_kmh=_number(_field(fields, anchor + 4), "speed", warnings),
            heading_deg=_number(_field(fields, anchor + 5), "heading", warnings),
            hdop=_number(_field(fields, anchor + 9), "hdop", warnings),
        )
    return fix, anchor


def _anchor(fields: list[str], start: int) -> int | None:
    for i in range(start, len(fields) - 3):
        if fields[i + 1] in ("N", "S") and fields[i + 3] in ("E", "W"):
            return i
    return None


def _coordinates(
    fields: list[str], at: int, valid: bool, time: datetime | None, warnings: list[str]
) -> Fix | None:
    try:
        lat = float(fields[at]) * (-1 if fields[at + 1] == "S" else 1)
        lon = float(fields[at + 2]) * (-1 if fields[at + 3] == "W" else 1)
    except ValueError:
        warnings.append(
            f"position: {fields[at]!r},{fields[at + 2]!r} are not decimal degrees; dropped"
        )
        return None
    return Fix(lat, lon, valid, time)


def _time(digits: str, warnings: list[str]) -> datetime | None:
    """ddmmyyyyhhmmss (or ddmmyyhhmmss) in UTC, as the fields between fix and latitude
    give it (one field, two, or six)."""
    digits = "".join(ch for ch in digits if ch.isdigit())
    if len(digits) == 12:
        digits = digits[:4] + "20" + digits[4:]
    if len(digits) != 14:
        warnings.append(f"time: {digits!r} is not ddmmyyyy hhmmss; the fix counts as received now")
        return None
    try:
        return datetime.strptime(digits, "%d%m%Y%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        warnings.append(f"time: {digits!r} is no date; the fix counts as received now")
        return None


def _number(text: str | None, name: str, warnings: list[str]) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        warnings.append(f"{name}: {text!r} is not a number; dropped")
        return None
    return value if value == value and abs(value) != float("inf") else None


def _field(fields: list[str], index: int) -> str | None:
    return fields[index] if 0 <= index < len(fields) else None

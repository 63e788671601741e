"""Vehicle alert or device packet -> what to do with it. Pure: no HTTP, no SQL.

Each delivery is read into a ``VehicleReading``: which vehicle (for the register), the
fix, and one of three actions. ``dispatch``: an emergency button, a ``vehicle_panic``
incident dispatched like any other. ``review``: a tamper alert (or an alert type nobody
knows), an incident that waits for an operator and is offered to no unit. ``follow``:
not an emergency (login, health, tracking, the button released); no incident, but the
fix moves the vehicle's open incident, if it has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from dispatch.errors import MalformedRequest
from dispatch.reports import IncidentReport
from dispatch.vehicles import DeviceSays, normalise_registration
from gateways.vehicle.packet import DevicePacket, PacketError, decode_packet
from gateways.vehicle.schema import VehicleAlert
from geo.location import InvalidLocation, Location, location_from_fix

Action = Literal["dispatch", "review", "follow"]

CHANNEL = "vehicle"
PANIC_TYPE = "vehicle_panic"
TAMPER_TYPE = "vehicle_tamper"
# A GPS fix with no stated uncertainty (HDOP 1 is about 5 m; trackers rarely do better).
GPS_RADIUS_M = 15.0
# A position the device flags as no current fix is its last known one: it may be far off.
STALE_RADIUS_M = 1000.0

_ALERT_TYPES = {
    "emergency": "emergency",
    "emergency_button": "emergency",
    "panic": "emergency",
    "sos": "emergency",
    "ea": "emergency",
    "emr": "emergency",
    "emergency_off": "emergency_off",
    "sem": "emergency_off",
    "tamper": "tamper",
    "wire_cut": "tamper",
    "wirecut": "tamper",
    "wire_disconnect": "tamper",
    "box_open": "tamper",
    "ta": "tamper",
    "login": "login",
    "lgn": "login",
    "health": "health",
    "heartbeat": "health",
    "hp": "health",
    "tracking": "tracking",
    "normal": "tracking",
    "location": "tracking",
    "nr": "tracking",
}
_ACTIONS: dict[str, Action] = {
    "emergency": "dispatch",
    "tamper": "review",
    "unknown": "review",
    "emergency_off": "follow",
    "login": "follow",
    "health": "follow",
    "tracking": "follow",
}
_IMEI = re.compile(r"[0-9]{15}")


@dataclass(frozen=True, slots=True)
class VehicleReading:
    """A delivery, read: the action, the vehicle, the fix and the incident report."""

    kind: str
    action: Action
    vehicle: DeviceSays | None
    location: Location | None
    report: IncidentReport
    review_reason: str | None = None

    @property
    def device_key(self) -> str | None:
        """The correlation key of the device (its reports join one incident)."""
        return self.report.sender_keys[0] if self.report.sender_keys else None


def read_alert(alert: VehicleAlert, *, gateway_id: str) -> VehicleReading:
    """Read a JSON alert; its raw packet fills in what the JSON leaves out."""
    warnings: list[str] = []
    packet: DevicePacket | None = None
    if alert.raw_packet:
        try:
            packet = decode_packet(alert.raw_packet)
        except PacketError as err:
            warnings.append(f"raw_packet: {err}; kept as text")
        else:
            warnings.extend(f"raw_packet: {w}" for w in packet.warnings)
            if packet.imei and packet.imei != alert.imei:
                warnings.append(f"raw_packet: its IMEI {packet.imei} is not the alert's imei")
    kind = _ALERT_TYPES.get(re.sub(r"[\s\-]+", "_", (alert.alert_type or "").strip().lower()))
    if kind is None:
        if alert.alert_type:
            warnings.append(f"alert_type: {alert.alert_type!r} is not a known alert type")
        kind = packet.kind if packet is not None else "unknown"
    if not _IMEI.fullmatch(alert.imei):
        warnings.append("imei: not 15 digits; kept as sent")
    location: Location | None = None
    if alert.location is not None:
        fix = alert.location
        radius = fix.accuracy_m if fix.accuracy_m is not None else GPS_RADIUS_M
        location = _location(fix.lat, fix.lon, radius, "gps", alert.time, warnings)
    elif packet is not None and packet.fix is not None:
        location = _packet_location(packet, warnings)
    registration = normalise_registration(alert.registration or "") or (
        packet.registration if packet is not None else None
    )
    payload: dict[str, Any] = alert.model_dump(mode="json")
    payload.update(
        kind=kind,
        registration=registration,
        packet=packet.to_json() if packet is not None else None,
    )
    vehicle = DeviceSays(alert.imei, registration, _text(alert.operator), _text(alert.vehicle_type))
    return _reading(kind, vehicle, location, payload, alert.alert_id, warnings, gateway_id)


def read_packet(text: str, *, gateway_id: str, delivery_id: str) -> VehicleReading:
    """Read a device's packet posted as it came (``text/plain``). MalformedRequest (422)
    when it is no AIS-140 packet: only the sender can fix that."""
    try:
        packet = decode_packet(text)
    except PacketError as err:
        raise MalformedRequest([{"loc": ["body"], "msg": str(err), "type": "ais140"}]) from err
    warnings = list(packet.warnings)
    if packet.stored:
        # A device out of network coverage stores its packets and sends them later.
        warnings.append("stored packet: the device sent it late; its fix is as old as its time")
    location = _packet_location(packet, warnings) if packet.fix is not None else None
    vehicle = DeviceSays(packet.imei, packet.registration, None, None) if packet.imei else None
    payload: dict[str, Any] = {
        "kind": packet.kind,
        "imei": packet.imei,
        "registration": packet.registration,
        "packet": packet.to_json(),
        "raw_packet": text,
    }
    return _reading(packet.kind, vehicle, location, payload, delivery_id, warnings, gateway_id)


def _reading(
    kind: str,
    vehicle: DeviceSays | None,
    location: Location | None,
    payload: dict[str, Any],
    external_id: str,
    warnings: list[str],
    gateway_id: str,
) -> VehicleReading:
    action = _ACTIONS[kind]
    name = (vehicle.registration or vehicle.imei) if vehicle is not None else "unknown"
    review_reason = None
    incident_type = PANIC_TYPE
    if kind == "tamper":
        incident_type = TAMPER_TYPE
        review_reason = (
            f"vehicle {name}: tracker tamper alert (panic-button wire cut or box opened);"
            " check with the vehicle's operator: no unit is offered until an operator"
            " assigns one or reclassifies it"
        )
    elif kind == "unknown":
        incident_type = "other"
        review_reason = (
            f"vehicle {name}: an alert of no known type; check with the vehicle's operator:"
            " no unit is offered until an operator assigns one or reclassifies it"
        )
    if action == "dispatch" and location is None:
        warnings.append("location: the alert carried no usable fix")
    report = IncidentReport(
        channel=CHANNEL,
        gateway_id=gateway_id,
        external_id=external_id,
        sender=name,
        incident_type=incident_type,
        location=location,
        payload=payload,
        warnings=tuple(warnings),
        sender_keys=(f"device:{vehicle.imei}",) if vehicle is not None else (),
    )
    return VehicleReading(kind, action, vehicle, location, report, review_reason)


def _packet_location(packet: DevicePacket, warnings: list[str]) -> Location | None:
    fix = packet.fix
    if fix is None:
        return None
    if not fix.valid:
        warnings.append(
            "fix: the device had no current GPS fix; its last known position is used, with"
            f" {STALE_RADIUS_M:.0f} m uncertainty"
        )
        return _location(fix.lat, fix.lon, STALE_RADIUS_M, "gps-last-known", fix.time, warnings)
    radius = max(5.0, fix.hdop * 5.0) if fix.hdop else GPS_RADIUS_M
    return _location(fix.lat, fix.lon, radius, "gps", fix.time, warnings)


def _location(
    lat: float,
    lon: float,
    radius_m: float,
    method: str,
    time: datetime | None,
    warnings: list[str],
) -> Location | None:
    try:
        return location_from_fix(lat=lat, lon=lon, radius_m=radius_m, method=method, time=time)
    except InvalidLocation as err:
        warnings.append(f"location dropped: {err}")
        return None


def _text(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None

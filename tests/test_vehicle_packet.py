"""The AIS-140 decoder, on packets written from the format's description (field by
field, as gateways/vehicle/packet.py lists them), and the JSON alert reading. Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from dispatch.errors import MalformedRequest
from dispatch.vehicles import DeviceSays, VehicleRow, merge_device, normalise_registration
from gateways.vehicle.adapter import read_alert, read_packet
from gateways.vehicle.packet import PacketError, decode_packet
from gateways.vehicle.schema import VehicleAlert

IMEI = "861234056789012"


def tracking(
    code: str = "NR",
    alert_id: str = "01",
    *,
    live: str = "L",
    registration: str = "OD02AB1234",
    fix: str = "1",
    date: str = "04122026",
    time: str = "101500",
    lat: str = "20.296100",
    lon: str = "85.824500",
    emergency: str = "0",
    header: str = "$,NRM,ACME,2.1.0",
) -> str:
    """A tracking/alert packet: header, vendor, firmware, packet type, alert id, L/H,
    IMEI, registration, fix, date, time, position, speed, heading, satellites,
    altitude, pdop, hdop, network operator, ignition, main power, main and battery
    voltage, emergency status, tamper, GSM signal, cells, I/O, frame number, checksum."""
    fields = [
        header,
        code,
        alert_id,
        live,
        IMEI,
        registration,
        fix,
        date,
        time,
        lat,
        "N",
        lon,
        "E",
        "42.5",
        "271.0",
        "12",
        "45.0",
        "1.4",
        "0.9",
        "AIRTEL",
        "1",
        "1",
        "24.1",
        "4.1",
        emergency,
        "C",
        "24",
        "404",
        "45",
        "0A1B",
        "2C3D",
        "0000",
        "00",
        "000123",
    ]
    return ",".join(fields) + ",*5F3A2B1C"


@pytest.mark.parametrize(("code", "alert_id"), [("EA", "10"), ("EA", "02"), ("NR", "10")])
def test_emergency_button_packet(code: str, alert_id: str) -> None:
    packet = decode_packet(tracking(code, alert_id))
    assert packet.kind == "emergency"
    assert packet.imei == IMEI
    assert packet.registration == "OD02AB1234"
    assert packet.fix is not None
    assert (packet.fix.lat, packet.fix.lon) == (20.2961, 85.8245)
    assert packet.fix.time == datetime(2026, 12, 4, 10, 15, tzinfo=UTC)
    assert (packet.fix.speed_kmh, packet.fix.heading_deg, packet.fix.hdop) == (42.5, 271.0, 0.9)
    assert packet.fix.valid
    assert packet.warnings == ()


def test_emergency_off_is_not_an_emergency() -> None:
    assert decode_packet(tracking("EA", "11")).kind == "emergency_off"


def test_emergency_layout_epb() -> None:
    """The short emergency packet: EPB, EMR, IMEI, NM/SP, date-time, A/V, position,
    altitude, speed, distance, provider, registration, reply number."""
    text = (
        f"$,EPB,EMR,{IMEI},NM,04122026101500,A,20.296100,N,85.824500,E,45.0,38.0,0.0,G,"
        "OD 02 AB 1234,+919437000000,*ABCD"
    )
    packet = decode_packet(text)
    assert packet.kind == "emergency"
    assert packet.layout == "emergency"
    assert packet.registration == "OD02AB1234"
    assert packet.fix is not None
    assert packet.fix.speed_kmh == 38.0
    assert not packet.stored
    stopped = decode_packet(text.replace("EMR", "SEM").replace(",NM,", ",SP,"))
    assert stopped.kind == "emergency_off"
    assert stopped.stored


def test_emergency_state_on_a_normal_packet_is_an_emergency() -> None:
    packet = decode_packet(tracking("NR", "01", emergency="1"))
    assert packet.kind == "emergency"
    assert "emergency_status" in packet.warnings[0]


@pytest.mark.parametrize(("code", "alert_id"), [("TA", "16"), ("WD", "03"), ("NR", "09")])
def test_tamper_and_wire_cut(code: str, alert_id: str) -> None:
    assert decode_packet(tracking(code, alert_id)).kind == "tamper"


@pytest.mark.parametrize(
    "text",
    [
        f"$LGN,ACME,{IMEI},2.1.0,20.2961,N,85.8245,E*1A",
        f"$,01,ACME,2.1.0,{IMEI},OD02AB1234,*00",
        f"$Header,ACME,OD02AB1234,{IMEI},2.1.0,AIS140,20.2961,N,85.8245,E*50",
    ],
)
def test_login(text: str) -> None:
    packet = decode_packet(text)
    assert packet.kind == "login"
    assert packet.imei == IMEI


def test_login_reads_the_registration_next_to_the_imei() -> None:
    assert decode_packet(f"$,01,ACME,2.1.0,{IMEI},OD02AB1234,*00").registration == "OD02AB1234"


@pytest.mark.parametrize(
    "text",
    [
        f"$,02,ACME,2.1.0,{IMEI},87,20,03.5,00010,00600,0000,00,00.0,00.0,*11",
        f"$HBT,ACME,{IMEI}*22",
        tracking("HP", "00"),
    ],
)
def test_health(text: str) -> None:
    assert decode_packet(text).kind == "health"


def test_normal_tracking_and_driving_alerts() -> None:
    for code in ("NR", "IN", "IF", "OS", "HB", "BD"):
        assert decode_packet(tracking(code, "01")).kind == "tracking"


def test_split_date_and_history_packets() -> None:
    text = tracking(live="H").replace(",04122026,101500,", ",04,12,2026,10,15,00,")
    packet = decode_packet(text)
    assert packet.stored
    assert packet.fix is not None
    assert packet.fix.time == datetime(2026, 12, 4, 10, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "starts with '$'"),
        ("NR,01,L,861234056789012", "starts with '$'"),
        ("$,NRM,ACME,2.1.0,NR,01,L,12345,", "no 15-digit IMEI"),
        (f"$,XYZ,{IMEI},hello", "not a known AIS-140 layout"),
        (tracking() + "\n" + tracking(), "one packet per request"),
        ("$" + "," * 5000, "longer than"),
    ],
)
def test_malformed_packets_say_why(text: str, why: str) -> None:
    with pytest.raises(PacketError, match=re.escape(why)):
        decode_packet(text)


def test_broken_fields_are_dropped_with_a_warning() -> None:
    packet = decode_packet(tracking("EA", "10", lat="2O.29", date="31022026"))
    assert packet.kind == "emergency"
    assert packet.fix is None
    assert any("not decimal degrees" in w for w in packet.warnings)
    assert any("time" in w for w in packet.warnings)


def test_an_emergency_without_imei_is_still_an_emergency() -> None:
    packet = decode_packet(tracking("EA", "10").replace(IMEI, "86123"))
    assert packet.kind == "emergency"
    assert packet.imei is None
    assert "imei" in packet.warnings[0]


def test_raw_packet_reading_chooses_the_action() -> None:
    assert read_packet(tracking("EA", "10"), gateway_id="v", delivery_id="d").action == "dispatch"
    assert read_packet(tracking("TA", "16"), gateway_id="v", delivery_id="d").action == "review"
    for text in (tracking(), f"$HBT,ACME,{IMEI}*22", f"$,01,ACME,2.1.0,{IMEI},OD02AB1234,*00"):
        assert read_packet(text, gateway_id="v", delivery_id="d").action == "follow"
    with pytest.raises(MalformedRequest):
        read_packet("no packet", gateway_id="v", delivery_id="d")


def test_a_fix_the_device_flags_stale_is_kept_as_last_known() -> None:
    reading = read_packet(tracking("EA", "10", fix="0"), gateway_id="v", delivery_id="d")
    assert reading.location is not None
    assert reading.location.method == "gps-last-known"
    assert reading.location.radius_m == 1000.0
    assert any("last known" in w for w in reading.report.warnings)


def test_json_alert_falls_back_on_its_raw_packet() -> None:
    alert = VehicleAlert(alert_id="a-1", imei=IMEI, raw_packet=tracking("EA", "10"))
    reading = read_alert(alert, gateway_id="vehicle")
    assert reading.action == "dispatch"
    assert reading.report.incident_type == "vehicle_panic"
    assert reading.location is not None
    assert reading.location.point.lat == 20.2961
    assert reading.report.sender == "OD02AB1234"
    assert reading.report.sender_keys == (f"device:{IMEI}",)
    unknown = read_alert(VehicleAlert(alert_id="a-2", imei=IMEI, alert_type="x"), gateway_id="v")
    assert unknown.action == "review"
    assert any("alert_type" in w for w in unknown.report.warnings)


def test_registrations_are_normalised_and_placeholders_dropped() -> None:
    assert normalise_registration("od-02 ab 1234") == "OD02AB1234"
    for placeholder in ("", "NA", "N.A", "NA00000000", "0000", IMEI):
        assert normalise_registration(placeholder) is None


def test_the_register_rule() -> None:
    says = DeviceSays(IMEI, "OD02AB1234", "Mo Bus", "bus")
    insert = merge_device(says, None, None)
    assert insert is not None
    assert insert.row_id is None
    # An operator's record of the vehicle gets the device; its operator name stays.
    known = VehicleRow(7, "OD02AB1234", None, "CRUT", None)
    change = merge_device(says, None, known)
    assert change is not None
    assert (change.row_id, change.columns) == (7, {"imei": IMEI, "vehicle_type": "bus"})
    # Nothing new: no write.
    same = VehicleRow(7, "OD02AB1234", IMEI, "CRUT", "bus")
    assert merge_device(says, same, same) is None
    # A registration another vehicle holds is not taken from it.
    other = VehicleRow(8, "OD02AB1234", "999", None, None)
    mine = VehicleRow(9, None, IMEI, "Mo Bus", "bus")
    assert merge_device(says, mine, other) is None


def test_a_stored_packet_sent_late_says_so() -> None:
    reading = read_packet(tracking("EA", "10", live="H"), gateway_id="v", delivery_id="d")
    assert reading.action == "dispatch"
    assert any("stored packet" in w for w in reading.report.warnings)
    live = read_packet(tracking("EA", "10"), gateway_id="v", delivery_id="d")
    assert not any("stored packet" in w for w in live.report.warnings)

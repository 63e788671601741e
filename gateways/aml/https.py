"""AML over HTTPS: the form-encoded POST a handset sends, and its HMAC."""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import parse_qsl

from gateways.aml.fields import (
    LANGUAGES,
    METHOD_WORDS,
    PHONE,
    SIGNED_METRES,
    NoLocation,
    Reader,
    text_of,
    to_location,
)
from gateways.aml.message import AmlError, AmlMessage
from geo.location import Location

_HEX_SHA1 = re.compile(rb"[0-9a-fA-F]{40}")


def parse_aml_https(body: str | bytes) -> AmlMessage:
    """Parse an HTTPS AML POST body (``application/x-www-form-urlencoded``, ``v=1..3``).

    Every field is optional (Google's ELS http-spec); empty values count as absent.
    ``location_time`` and ``time`` are Unix milliseconds. ``location_certainty`` is a
    percentage; ``location_confidence`` a fraction 0..1. The ``hmac`` field is not
    checked here: see `verify_aml_https_hmac`. Raises AmlError when the body is not
    form-encoded text or has none of ``v``, ``device_number``, ``location_latitude``,
    ``location_longitude``.
    """
    text = text_of(body)
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
    r = Reader([(k, v.strip()) for k, v in pairs], warnings)
    version = r.digits("v", 1, 3, "a version number")
    method = r.method("location_source", METHOD_WORDS, "gps, wifi, cell or unknown")
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
        location = to_location(
            "location_latitude/location_longitude", lat, lon, radius, method, time
        )
    except NoLocation as err:
        error = str(err)
    altitude = r.matched("location_altitude", SIGNED_METRES, "an altitude in metres")
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
        emergency_number=r.matched("emergency_number", PHONE, "a dialled number"),
        call_time=r.epoch("time", per_second=1000),
        altitude_m=float(altitude) if altitude is not None else None,
        vertical_accuracy_m=r.metres("location_vertical_accuracy", "an accuracy in metres"),
        languages=r.matched("device_languages", LANGUAGES, "a list of language tags"),
        device_number=r.matched("device_number", PHONE, "a phone number"),
        warnings=warnings,
        fields=r.fields,
    )


def _https_confidence(r: Reader) -> int | None:
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

"""AML query answers: the JSON list of fixes a PSAP gets when it asks an AML endpoint."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from gateways.aml.fields import (
    METHOD_WORDS,
    NoLocation,
    Reader,
    show,
    text_of,
    to_location,
)
from gateways.aml.message import AmlError, AmlMessage
from geo.location import Location


def parse_aml_query_response(body: str | bytes) -> AmlMessage:
    """Parse the JSON a PSAP gets when it queries an AML endpoint for a caller.

    The body is a list of fixes (``location_latitude``, ``location_longitude``,
    ``location_accuracy``, ``location_source``, ``location_time``, ``status``), numbers
    either JSON numbers or strings. The usable fix with the smallest accuracy is the
    location; each unusable one adds a warning. A ``location_time`` without a timezone
    is not used (the endpoint's local time is unknown). Raises AmlError when the body is
    not JSON or not a list of such objects.
    """
    text = text_of(body)
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
        r = Reader(list(raw.items()), fix_warnings)
        status = r.raw("status")
        if status is not None and status.lower() != "ok":
            problems.append(f"fix {number}: status: {show(status)}")
            continue
        method = r.method("location_source", METHOD_WORDS, "gps, wifi, cell or unknown")
        try:
            lat = r.coordinate(
                "location_latitude", r.raw("location_latitude"), limit=90, name="latitude"
            )
            lon = r.coordinate(
                "location_longitude", r.raw("location_longitude"), limit=180, name="longitude"
            )
            radius = r.metres("location_accuracy", "an accuracy in metres")
            location = to_location(
                "location_latitude/location_longitude", lat, lon, radius, method, _query_time(r)
            )
        except NoLocation as err:
            problems.append(f"fix {number}: {err}")
            continue
        warnings.extend(f"fix {number}: {w}" for w in fix_warnings)
        usable.append((location, method, raw))
    warnings.extend(problems)
    if not usable:
        # There is at least one fix, and each one is usable or a problem: never empty.
        return AmlMessage(
            kind="query-response",
            version=None,
            location=None,
            location_error="; ".join(problems),
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


def _query_time(r: Reader) -> datetime | None:
    value = r.raw("location_time")
    if value is None:
        return None
    if re.fullmatch(r"[0-9]{1,16}", value):
        return r.epoch("location_time", per_second=1000)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        r.warn("location_time", f"{show(value)} is not a time; ignored")
        return None
    if parsed.tzinfo is None:
        r.warn("location_time", f"{show(value)} has no timezone; ignored")
        return None
    return parsed.astimezone(UTC)


def _json_text(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        # repr keeps every digit; JSON has no nan/inf, so the patterns see plain numbers.
        return repr(value)
    return json.dumps(value)[:100]

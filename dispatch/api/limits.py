"""What an operator request may carry: the one place for id ranges and text limits.

PostgreSQL stores ids as ``bigint`` and text as UTF-8 without NUL; a value outside those
used to reach the driver and fail there as a 500. These types refuse it at the door
with a 422 naming the field, so nothing is read or written. Each works in a path, a
query or a body model alike (the constraints are pydantic metadata, which FastAPI
applies to parameters too, and they appear in the OpenAPI document).
"""

from __future__ import annotations

import re
from typing import Annotated

import annotated_types as at
from pydantic import BeforeValidator, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from starlette.requests import HTTPConnection

from dispatch.errors import MalformedRequest

INT64_MAX = 2**63 - 1
# Ids stop at the largest integer a JSON number keeps exactly in a JavaScript console
# (and in any client parsing JSON numbers as doubles); PostgreSQL's bigserial is far
# from it, so no stored id is refused, and nothing beyond int64 reaches the driver.
MAX_ID = 2**53 - 1

# C0 controls and DEL, except tab, newline and carriage return (a note has lines).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SAFE_TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


def _no_control(value: object) -> object:
    # Before the length and pattern checks, so a NUL gets this sentence, not a regex.
    if isinstance(value, str) and _CONTROL.search(value):
        raise ValueError(
            "control characters (such as NUL) are not allowed; only tab, newline and"
            " carriage return"
        )
    return value


class _Documented:
    """Puts the refusal of control characters in the JSON schema as a pattern, so
    clients (and schemathesis) know it; the validator above gives the readable error."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = SAFE_TEXT_PATTERN
        return json_schema


# Lone surrogates never get this far: pydantic refuses a str that is not valid Unicode
# ("unable to parse ... as a unicode string").
_SAFE = BeforeValidator(_no_control)
_DOC = _Documented()


def _integral(value: object) -> object:
    # JSON has one number type: 2869.0 is the integer 2869 to JSON Schema and to a
    # JavaScript client, so a strict body takes it; 2869.5, "2869" and true stay refused.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An incident, assignment or report id: positive, a bigint, exact as a JSON number.
RowId = Annotated[int, at.Ge(1), at.Le(MAX_ID), BeforeValidator(_integral)]
IncidentId = RowId
AssignmentId = RowId
ReportId = RowId

# A unit id (e.g. "capital-police-1").
UnitId = Annotated[str, StringConstraints(min_length=1, max_length=100), _SAFE, _DOC]
# A one-line label: an incident type, a disposition, a status filter.
Label = Annotated[str, StringConstraints(min_length=1, max_length=200), _SAFE, _DOC]
# Why the operator did it (kept in the event log).
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500), _SAFE, _DOC]
# A free-text note.
NoteText = Annotated[str, StringConstraints(min_length=1, max_length=4000), _SAFE, _DOC]
# What a caller said, to geocode: some character that is not a space, and no controls.
SPOKEN_PATTERN = (
    r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
)
SpokenPlace = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=SPOKEN_PATTERN), _SAFE
]
# A phone number as typed (normalised later).
PhoneNumber = Annotated[str, StringConstraints(min_length=1, max_length=50), _SAFE, _DOC]
# A vehicle's registration as written: only its letters and digits are kept, so it must
# have one.
Registration = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=32,
        pattern=r"^[^\x00-\x1f\x7f]*[A-Za-z0-9][^\x00-\x1f\x7f]*$",
    ),
    _SAFE,
]
# A tracking device's IMEI (15 digits from an AIS-140 device; a backend's other ids fit).
DeviceImei = Annotated[str, StringConstraints(min_length=1, max_length=32), _SAFE, _DOC]


async def single_query_values(connection: HTTPConnection) -> None:
    """Refuse a query parameter given more than once: every parameter here takes one
    value, and the framework would silently keep the last (``?status=a&status=b``).

    Async although it awaits nothing: it runs on every request and websocket, and
    FastAPI runs a plain ``def`` dependency in its thread pool."""
    if connection.scope["type"] != "http":
        return
    seen: set[str] = set()
    repeated = []
    for name, _value in connection.query_params.multi_items():
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise MalformedRequest(
            [
                {
                    "loc": ["query", name],
                    "msg": "given more than once; send it once",
                    "type": "repeated",
                }
                for name in repeated
            ]
        )

"""Reading a gateway's JSON without refusing an emergency for what else it carries.

Pure: no HTTP, no SQL. The envelope (the channel's identity fields) must be right, or
the gateway gets a 422 naming the field; every other field that cannot be used is
dropped, one by one, each with a warning the 202 answer carries. What PostgreSQL cannot
store (NUL, lone UTF-16 surrogates, non-finite numbers) is cleaned out of every string
and number first, so nothing a gateway signs can fail the write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from dispatch.errors import MalformedRequest
from dispatch.storable import clean_tree

ModelT = TypeVar("ModelT", bound=BaseModel)

# Beyond this many digits Python refuses to read an integer (CPython's int/str limit);
# such a number is no coordinate, so it is read as a float (infinite, then dropped).
_MAX_INT_DIGITS = 4000
# Each pass drops at least one field: a body has far fewer problem fields than this.
_MAX_PASSES = 50


@dataclass(frozen=True, slots=True)
class Parsed(Generic[ModelT]):
    """A validated body and what had to be dropped to get it."""

    value: ModelT
    warnings: tuple[str, ...]


def parse_lenient(body: bytes, model: type[ModelT], identity: tuple[str, ...]) -> Parsed[ModelT]:
    """Validate ``body`` against ``model``, dropping unusable optional fields.

    Raises MalformedRequest when the body is not a JSON object or an ``identity``
    field is missing or invalid: only the gateway can fix those.
    """
    data = _load_object(body)
    warnings: list[str] = []
    data = clean_tree(data, "", warnings)
    for _ in range(_MAX_PASSES):
        try:
            # Back through JSON: the models are strict, and strict JSON reads ISO times.
            return Parsed(model.model_validate_json(json.dumps(data)), tuple(warnings))
        except ValidationError as err:
            errors = err.errors(include_url=False, include_input=False)
        refused = [e for e in errors if not e["loc"] or e["loc"][0] in identity]
        if refused:
            raise MalformedRequest(
                [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in refused]
            )
        # One field a pass: dropping an item of a list moves the others' indexes.
        first = errors[0]
        loc = list(first["loc"])
        # A missing required sub-field makes its parent unusable, not the field.
        target = loc[:-1] if first["type"] == "missing" else loc
        if not _drop(data, target):
            # A location pydantic names by a type (unions) rather than a key: the whole
            # top-level field goes.
            target = loc[:1]
            _drop(data, target)
        reason = f"{loc[-1]} missing or unusable" if first["type"] == "missing" else first["msg"]
        warnings.append(f"{_dotted(target)}: {reason}; dropped")
    raise MalformedRequest(
        [{"loc": ["body"], "msg": "too many unusable fields to read this body", "type": "value"}]
    )


def _load_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body, parse_int=_read_int)
    except RecursionError as err:
        raise _envelope("the JSON is nested too deeply to read") from err
    except (ValueError, UnicodeDecodeError) as err:
        raise _envelope(f"the body is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise _envelope(f"the body must be a JSON object, not {type(data).__name__}")
    return data


def _read_int(digits: str) -> int | float:
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else float(digits)


def _envelope(reason: str) -> MalformedRequest:
    return MalformedRequest([{"loc": ["body"], "msg": reason, "type": "json_invalid"}])


def _drop(data: Any, loc: list[int | str]) -> bool:
    """Remove the value at ``loc``; False when there is nothing there to remove."""
    parent = data
    for step in loc[:-1]:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            return False
    last = loc[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
        return True
    if isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
        del parent[last]
        return True
    return False


def _dotted(loc: list[int | str]) -> str:
    return ".".join(str(step) for step in loc)

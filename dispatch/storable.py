"""Values made storable: what PostgreSQL's text and jsonb cannot hold, taken out.

Pure. NUL and lone UTF-16 surrogates (legal in JSON's escapes, not in UTF-8) become
U+FFFD, so a reader sees something was there; non-finite numbers (NaN, Infinity, an
overflowing 1e999) become null, with a warning naming where each was.
"""

from __future__ import annotations

import math
from typing import Any

REPLACEMENT = "\ufffd"


def clean_text(text: str) -> str:
    """``text`` without what PostgreSQL text cannot hold (NUL, lone surrogates)."""
    if "\x00" not in text and text.isascii():
        return text
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join(REPLACEMENT if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


# No report nests anywhere near this; deeper content is cut (null) with a warning, so
# neither Python's recursion limit nor pydantic's (about 200 levels) fails the report.
MAX_DEPTH = 32


def clean_tree(
    value: Any, path: str = "", warnings: list[str] | None = None, depth: int = 0
) -> Any:
    """A JSON value made storable: strings cleaned, non-finite numbers dropped (None),
    anything nested deeper than ``MAX_DEPTH`` cut (None).

    ``warnings`` (when given) gets one line per value dropped, naming where it was.
    """
    if depth > MAX_DEPTH and isinstance(value, dict | list | tuple):
        if warnings is not None:
            warnings.append(f"{path}: nested deeper than {MAX_DEPTH} levels; dropped")
        return None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        if warnings is not None:
            warnings.append(f"{path or 'body'}: {value!r} is not a finite number; dropped")
        return None
    if isinstance(value, dict):
        return {
            clean_text(str(k)): clean_tree(v, _join(path, str(k)), warnings, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [
            clean_tree(v, _join(path, str(i)), warnings, depth + 1) for i, v in enumerate(value)
        ]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key

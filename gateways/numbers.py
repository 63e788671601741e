"""Telephone numbers as gateways send them."""

from __future__ import annotations

import re

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def number_warning(field: str, number: str) -> str | None:
    """A warning when ``number`` is not E.164; such numbers are kept, never refused."""
    if _E164.fullmatch(number):
        return None
    return f"{field}: {number!r} is not an E.164 number; kept as given"

"""Telephone numbers as gateways send them."""

from __future__ import annotations

import re

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def number_warning(field: str, number: str) -> str | None:
    """A warning when ``number`` is not E.164; such numbers are kept, never refused."""
    if _E164.fullmatch(number):
        return None
    return f"{field}: {number!r} is not an E.164 number; kept as given"


def tel_key(number: str) -> str | None:
    """The correlation key of a phone number, or None if it has too few digits.

    Indian numbers arrive as +91XXXXXXXXXX, 91XXXXXXXXXX, 0XXXXXXXXXX or XXXXXXXXXX
    depending on the network; the last ten digits identify the subscriber in all of them.
    """
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) < 6:
        return None
    return "tel:" + (digits[-10:] if len(digits) >= 10 else digits)

"""HMAC-SHA256 webhook signatures (../shared/API.md): pure functions, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import re

# ASCII digits only: str.isdigit() also takes "²" or Arabic-Indic digits, which int()
# then refuses or reads differently from the gateway. Twelve digits reach year 33658.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureError(Exception):
    """A request whose signature or timestamp does not check out."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-ERSS-Signature`` value for a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    *,
    secrets: tuple[str, ...],
    timestamp: str,
    body: bytes,
    signature: str,
    now: float,
    max_skew_s: int,
) -> None:
    """Raise SignatureError unless the signature matches one of the gateway's valid
    ``secrets`` (several during a rotation) and the timestamp is fresh."""
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError(
            "X-ERSS-Timestamp must be Unix seconds as an integer string of ASCII digits"
        )
    skew = abs(now - int(timestamp))
    if skew > max_skew_s:
        raise SignatureError(
            f"X-ERSS-Timestamp is {int(skew)} s from the server clock (limit {max_skew_s} s);"
            " check the gateway's clock"
        )
    if not signature.isascii():
        # compare_digest refuses non-ASCII text (a TypeError, a 500); no valid one has it.
        raise SignatureError("X-ERSS-Signature must be sha256= and 64 hex digits (ASCII only)")
    # Every secret is tried (no early exit) so timing does not tell which one matched.
    matches = [hmac.compare_digest(sign(secret, timestamp, body), signature) for secret in secrets]
    if not any(matches):
        raise SignatureError(
            "X-ERSS-Signature does not match: expected sha256=HMAC-SHA256(secret,"
            " timestamp + '.' + raw body) in hex"
        )

"""A small signing client for the gateway endpoints (``erss send ...``).

For operators testing a gateway's set-up and for the simulator: it builds the same
signed requests a telecom operator, SMS aggregator or panic-app backend sends. It uses
only the standard library so that it runs anywhere the package is installed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from gateways.signing import sign

PATHS = {
    "panic": "/v1/gateways/panic",
    "call": "/v1/gateways/telecom/calls",
    "sms": "/v1/gateways/sms",
    "vehicle": "/v1/gateways/vehicle",
}


@dataclass(frozen=True, slots=True)
class Answer:
    """The server's answer to one delivery."""

    status: int
    body: dict[str, Any] | str


def aml_sms(lat: float, lon: float, radius_m: float = 10.0) -> str:
    """An AML v1 SMS text (ETSI TS 103 625) for a GPS fix, with a correct length field."""
    top = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    text = (
        f'A"ML=1;lt={lat:+.5f};lg={lon:+.5f};rd={radius_m:.0f};top={top};lc=68;pm=G;'
        "si=000000000000000;ei=000000000000000;mcc=404;mnc=00;ml="
    )
    return text + str(len(text) + 3)


def deliver(
    base_url: str,
    path: str,
    payload: dict[str, Any],
    *,
    gateway: str,
    secret: str,
    idempotency_key: str | None = None,
    timeout_s: float = 10.0,
) -> Answer:
    """Sign and POST one delivery; the answer, whatever its status."""
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(  # noqa: S310 - the operator chooses the URL
        base_url.rstrip("/") + path,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-ERSS-Gateway": gateway,
            "X-ERSS-Timestamp": timestamp,
            "X-ERSS-Signature": sign(secret, timestamp, body),
            "Idempotency-Key": idempotency_key or uuid.uuid4().hex,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return Answer(response.status, _decode(response.read()))
    except urllib.error.HTTPError as err:
        return Answer(err.code, _decode(err.read()))


def _decode(raw: bytes) -> dict[str, Any] | str:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
    return value if isinstance(value, dict) else {"value": value}

"""Gateway hardening: rotated secrets, size limits, rate limits, AML over HTTPS."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from dispatch.settings import Settings
from gateways.signing import SignatureError, sign, verify
from tests.conftest import LiveServer
from tests.test_walking_skeleton import TABLES, panic, rows_written, zone_point

OLD = "old-secret-0123456789abcdef"
NEW = "new-secret-0123456789abcdef"


@pytest.fixture
async def settings(settings: Settings, tmp_path: Path) -> Settings:
    gateways = tmp_path / "gateways.json"
    gateways.write_text(
        json.dumps(
            {
                "panic": {"channel": "panic", "secrets": [OLD, NEW]},
                "els": {"channel": "sms", "secrets": [NEW]},
            }
        )
    )
    return settings.model_copy(
        update={
            "gateways_file": gateways,
            "gateway_rate_per_s": 5,
            "gateway_max_body_bytes": 4096,
        }
    )


async def test_both_secrets_of_a_rotation_are_accepted(live: LiveServer) -> None:
    point = zone_point("capital")
    for n, secret in enumerate((OLD, NEW)):
        response = await live.post_panic(panic(point, trigger=f"r{n}"), secret=secret)
        assert response.status_code == 202, response.text
    wrong = await live.post_panic(panic(point, trigger="r2"), secret="x" * 27)
    assert wrong.status_code == 401


async def test_oversized_body_is_413_and_stores_nothing(live: LiveServer) -> None:
    body = panic(zone_point("capital"))
    body["padding"] = "x" * 5000
    response = await live.post_panic(body, secret=NEW)
    assert response.status_code == 413
    assert "4096" in response.json()["detail"]
    assert await rows_written(live) == dict.fromkeys(TABLES, 0)


async def test_over_the_rate_429_with_retry_after_and_nothing_lost(live: LiveServer) -> None:
    point = zone_point("capital")
    # Batches of 20 sent together land within a second or two: far over 5 per second.
    # On a loaded machine a batch may spread out; send more until one is limited (at
    # most ten batches), rather than hope the first was fast enough.
    answers: list[Any] = []
    for batch in range(10):
        answers += await asyncio.gather(
            *(live.post_panic(panic(point, trigger=f"f{batch}-{n}"), secret=NEW) for n in range(20))
        )
        if any(r.status_code == 429 for r in answers):
            break
    accepted = [r for r in answers if r.status_code == 202]
    limited = [r for r in answers if r.status_code == 429]
    assert limited, "no request was limited"
    assert all(r.headers["retry-after"] == "1" for r in limited)
    assert len(accepted) + len(limited) == len(answers)
    # Every 202 is a committed incident; every 429 stored nothing.
    assert await live.count("incidents") == len(accepted)
    assert await live.count("idempotency_keys") == len(accepted)


async def test_aml_over_https_is_treated_like_the_sms_form(live: LiveServer) -> None:
    point = zone_point("nandankanan")
    form = urlencode(
        {
            "v": "3",
            "device_number": "+919437055555",
            "location_latitude": f"{point.lat:.6f}",
            "location_longitude": f"{point.lon:.6f}",
            "location_time": "1764464400000",
            "location_accuracy": "14.5",
            "location_source": "GPS",
        }
    ).encode()
    headers = live.signed_headers(form, gateway="els", secret=NEW)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    response = await live.http.post("/v1/gateways/aml", content=form, headers=headers)
    assert response.status_code == 202, response.text
    row = await live.db.fetchrow("SELECT zone_id, radius_m, status FROM incidents")
    assert (row["zone_id"], row["radius_m"], row["status"]) == ("nandankanan", 14.5, "offered")

    missing = urlencode({"v": "3", "location_latitude": "20.3"}).encode()
    headers = live.signed_headers(missing, gateway="els", secret=NEW)
    response = await live.http.post("/v1/gateways/aml", content=missing, headers=headers)
    assert response.status_code == 422
    assert response.json()["fields"][0]["loc"] == ["body", "device_number"]
    assert await live.count("incidents") == 1


# The signature contract (docs/gateways.md): sha256= HMAC-SHA256(secret, timestamp + "."
# + raw body) in lower-case hex, computed here with the standard library.
BODY = b'{"trigger_id": "t-1"}'
TS = "1735727400"


def _expected(secret: str, timestamp: str = TS, body: bytes = BODY) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _verify(signature: str, *, secrets: tuple[str, ...] = (NEW,), timestamp: str = TS,
            now: float = 1735727400.0, skew: int = 300) -> None:  # fmt: skip
    verify(
        secrets=secrets,
        timestamp=timestamp,
        body=BODY,
        signature=signature,
        now=now,
        max_skew_s=skew,
    )


def test_sign_is_the_documented_hmac() -> None:
    assert sign(NEW, TS, BODY) == _expected(NEW)
    assert sign(NEW, TS, BODY) != _expected(OLD)


def test_verify_accepts_any_secret_of_a_rotation_and_nothing_else() -> None:
    _verify(_expected(NEW))
    _verify(_expected(OLD), secrets=(OLD, NEW))
    _verify(_expected(NEW), secrets=(OLD, NEW))
    for wrong in (_expected(OLD), _expected(NEW, body=BODY + b" "), "", _expected(NEW)[7:]):
        with pytest.raises(SignatureError) as caught:
            _verify(wrong)
        assert str(caught.value) == (
            "X-ERSS-Signature does not match: expected sha256=HMAC-SHA256(secret,"
            " timestamp + '.' + raw body) in hex"
        )
    with pytest.raises(SignatureError):
        _verify(_expected(NEW), secrets=())


@pytest.mark.parametrize(("now", "ok"), [(1735727700.0, True), (1735727100.0, True),
                                         (1735727701.0, False), (1735727099.0, False)])  # fmt: skip
def test_verify_refuses_a_timestamp_beyond_the_skew(now: float, ok: bool) -> None:
    """300 s either way is accepted; a second more is refused, naming the limit."""
    if ok:
        _verify(_expected(NEW), now=now)
        return
    with pytest.raises(SignatureError) as caught:
        _verify(_expected(NEW), now=now)
    assert str(caught.value) == (
        "X-ERSS-Timestamp is 301 s from the server clock (limit 300 s); check the gateway's clock"
    )


@pytest.mark.parametrize("timestamp", ["", "17357274OO", "+1735727400", "1735727400.5",
                                       "\u0661\u0662", "1" * 13, " 1735727400"])  # fmt: skip
def test_verify_refuses_a_timestamp_that_is_not_ascii_digits(timestamp: str) -> None:
    with pytest.raises(SignatureError) as caught:
        _verify(_expected(NEW, timestamp=timestamp), timestamp=timestamp)
    assert str(caught.value) == (
        "X-ERSS-Timestamp must be Unix seconds as an integer string of ASCII digits"
    )

"""The AML-over-HTTPS body's own hmac: checked with the gateway's AML key, warned about
when wrong, never a reason to refuse the report."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest

from dispatch.settings import Settings
from tests.conftest import LiveServer

SECRET = "els-secret-0123456789abcdef"
AML_KEY = "handset-aml-key-42"


@pytest.fixture
async def settings(settings: Settings, tmp_path: Path) -> Settings:
    gateways = tmp_path / "gateways.json"
    gateways.write_text(
        json.dumps(
            {
                "els": {"channel": "sms", "secrets": [SECRET], "aml_keys": [AML_KEY]},
                "els-plain": {"channel": "sms", "secrets": [SECRET]},
            }
        )
    )
    return settings.model_copy(update={"gateways_file": gateways})


def _form(key: str | None) -> bytes:
    body = urlencode(
        {
            "v": "3",
            "device_number": "+919437012345",
            "location_latitude": "20.2725",
            "location_longitude": "85.8338",
            "location_accuracy": "12",
            "location_source": "gps",
            "location_time": "1764840000000",
            "nonce": uuid.uuid4().hex,
        }
    ).encode()
    if key is None:
        return body
    mac = hmac.new(key.encode(), body, hashlib.sha1).hexdigest()
    return body + b"&hmac=" + mac.encode()


async def _post(live: LiveServer, body: bytes, gateway: str) -> dict[str, object]:
    response = await live.http.post(
        "/v1/gateways/aml",
        content=body,
        headers={
            **live.signed_headers(body, gateway=gateway, secret=SECRET),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 202, response.text
    answer: dict[str, object] = response.json()
    return answer


async def _verified(live: LiveServer, report_id: object) -> object:
    payload = await live.db.fetchval("SELECT payload FROM reports WHERE id = $1", report_id)
    return payload["hmac_verified"]


async def test_a_correct_hmac_is_verified(live: LiveServer) -> None:
    answer = await _post(live, _form(AML_KEY), "els")
    assert await _verified(live, answer["report_id"]) is True
    assert not any("hmac" in str(w) for w in answer["warnings"])  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", ["another-key-entirely", None])
async def test_a_wrong_or_missing_hmac_warns_and_keeps_the_report(
    live: LiveServer, key: str | None
) -> None:
    answer = await _post(live, _form(key), "els")
    assert await _verified(live, answer["report_id"]) is False
    assert any(str(w).startswith("hmac:") for w in answer["warnings"])  # type: ignore[attr-defined]
    # Kept, and placed: the location is still the caller's best evidence.
    assert answer["status"] != "awaiting_location"


async def test_without_a_key_the_hmac_is_not_checked(live: LiveServer) -> None:
    answer = await _post(live, _form("whatever"), "els-plain")
    assert await _verified(live, answer["report_id"]) is None

"""`erss send`: a signed report from the command line, as a gateway would send it."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from gateways.aml.parse import parse_aml_sms
from gateways.client import aml_sms
from tests.conftest import LiveServer
from tests.test_walking_skeleton import zone_point


async def _send(creds: Path, *args: str) -> tuple[int, dict[str, object]]:
    # A subprocess, awaited without blocking: the server runs in this event loop.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatch.cli",
        "send",
        *args,
        "--credentials",
        str(creds),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if out else {"stderr": err.decode()}


async def test_send_panic_sms_and_silent_call(live: LiveServer, tmp_path: Path) -> None:
    creds = tmp_path / "demo-credentials.json"
    creds.write_text(json.dumps({**live.credentials, "base_url": live.base_url}))
    point = zone_point("khandagiri")
    code, out = await _send(creds, "panic", "--lat", str(point.lat), "--lon", str(point.lon))
    assert code == 0, out
    assert out["status"] == 202
    code, out = await _send(
        creds,
        "sms",
        "--phone",
        "+919437099999",
        "--lat",
        str(point.lat),
        "--lon",
        str(point.lon + 0.01),
    )
    assert code == 0, out
    code, out = await _send(creds, "call", "--phone", "+919437088888", "--silent")
    assert code == 0, out
    statuses = await live.db.fetch("SELECT status, zone_id FROM incidents ORDER BY id")
    assert [r["status"] for r in statuses] == ["offered", "offered", "callback"]
    code, out = await _send(creds, "panic", "--lat", "1", "--lon", "2", "--secret", "wrong")
    assert code == 1
    assert out["status"] == 401


def test_aml_text_from_the_client_is_valid_aml() -> None:
    message = parse_aml_sms(aml_sms(20.2961, 85.8245, 12))
    assert message.location_error is None
    assert message.length_matches is True
    assert (message.lat, message.lon, message.radius_m) == (20.2961, 85.8245, 12.0)

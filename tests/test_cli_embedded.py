"""`erss serve --demo` with no URLs set: embedded PostgreSQL and Redis, kept across runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateways.signing import sign


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Short on purpose: the embedded servers' Unix sockets live under it.
    path = Path(tempfile.mkdtemp(prefix="erss-cli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERSS_")}
    env["ERSS_DATA_DIR"] = str(data_dir)
    # The child keeps its own copy of the descriptor; ours can close at once.
    with open(data_dir / "serve.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "dispatch.cli", "serve", "--demo", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"erss serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"erss serve did not become ready:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_serves_with_no_urls_and_keeps_data_across_restarts(data_dir: Path) -> None:
    """The embedded mode starts, serves a signed panic, stops cleanly, reuses its data."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = data_dir / "serve.log"
    proc = _serve(data_dir, port)
    try:
        _wait_ready(proc, base_url, log)
        creds = json.loads((data_dir / "demo-credentials.json").read_text())
        assert set(creds["gateways"]) == {"telecom", "sms", "panic", "vehicle"}
        body = json.dumps(
            {
                "trigger_id": "cli-1",
                "device_id": "phone-1",
                "location": {"lat": 20.2725, "lon": 85.8338, "accuracy_m": 15},
            }
        ).encode()
        ts = str(int(time.time()))
        response = httpx.post(
            base_url + "/v1/gateways/panic",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-ERSS-Gateway": "panic",
                "X-ERSS-Timestamp": ts,
                "X-ERSS-Signature": sign(creds["gateways"]["panic"], ts, body),
                "Idempotency-Key": "cli-1",
            },
        )
        assert response.status_code == 202, response.text
        incident_id = response.json()["incident_id"]
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]

    proc = _serve(data_dir, port)
    try:
        _wait_ready(proc, base_url, log)
        creds = json.loads((data_dir / "demo-credentials.json").read_text())
        token = creds["operators"]["dispatcher"]
        detail = httpx.get(
            f"{base_url}/v1/incidents/{incident_id}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert detail.status_code == 200
        assert detail.json()["reports"][0]["external_id"] == "cli-1"
    finally:
        assert _stop(proc) == 0

"""The command line speaks to people: a server that is down is a sentence, not a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_send_to_a_server_that_is_down_says_so(tmp_path: Path) -> None:
    base_url = f"http://127.0.0.1:{_free_port()}"
    creds = tmp_path / "demo-credentials.json"
    creds.write_text(json.dumps({"base_url": base_url, "gateways": {"panic": "s3cret-value"}}))
    done = subprocess.run(
        [sys.executable, "-m", "dispatch.cli", "send", "panic", "--credentials", str(creds)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert f"could not reach {base_url}" in done.stderr
    assert "refused" in done.stderr.lower()
    # The gateway's secret is not something to print when things go wrong.
    assert "s3cret-value" not in done.stderr + done.stdout

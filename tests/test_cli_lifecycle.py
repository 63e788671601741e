"""`erss serve --demo` as a supervisor runs it: SIGTERM stops what it started, and a
restart keeps every token (open consoles and MDTs stay logged in)."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import httpx

from tests.test_cli_embedded import _free_port, _serve, _wait_ready, data_dir  # noqa: F401


def _processes_under(folder: Path) -> list[int]:
    """Pids of processes whose command line names ``folder`` (the embedded servers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in cmdline and "dispatch.cli" not in cmdline:
            found.append(int(entry.name))
    return found


def _gone(pids: list[int], within: float) -> list[int]:
    deadline = time.monotonic() + within
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(p)]
        time.sleep(0.1)
    return alive


def _zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


def test_sigterm_stops_the_embedded_servers_and_a_restart_keeps_tokens(
    data_dir: Path,  # noqa: F811
) -> None:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = data_dir / "serve.log"
    proc = _serve(data_dir, port)
    try:
        _wait_ready(proc, base_url, log)
        first = json.loads((data_dir / "demo-credentials.json").read_text())
        servers = _processes_under(data_dir)
        assert servers, "the embedded PostgreSQL and Redis run under the data folder"
        # What start-up made is out of the garbage collector's full passes.
        metrics = httpx.get(base_url + "/metrics").text
        frozen = re.search(r"^erss_gc_frozen_objects (\S+)$", metrics, re.MULTILINE)
        assert frozen is not None, metrics[-2000:]
        assert float(frozen.group(1)) > 10_000
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
    assert _gone(servers, within=30) == [], log.read_text()[-3000:]

    proc = _serve(data_dir, port)
    try:
        _wait_ready(proc, base_url, log)
        second = json.loads((data_dir / "demo-credentials.json").read_text())
        assert second["operators"] == first["operators"]
        assert second["units"] == first["units"]
        assert second["gateways"] == first["gateways"]
        token = first["operators"]["dispatcher"]
        listed = httpx.get(base_url + "/v1/incidents", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200, listed.text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

"""No token in any log line: uvicorn's websocket and access lines, text and JSON.

The server is the real thing: ``erss serve`` in a child process (our logging set-up,
text or JSON), and a uvicorn started the way tests and benches start it (uvicorn's own
logging set-up); what they write to stderr is read back and searched for the tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from dispatch.app import create_app
from dispatch.redact import (
    _RULES,
    _SECRET_NAMES,
    REDACTED,
    RedactingFilter,
    may_hold_secret,
    redact,
)
from dispatch.settings import Settings

FAKE = "not-a-real-token-but-secret-looking-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_until(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {within} s")
        await asyncio.sleep(0.1)


async def _exercise(base: str, ws_base: str, operator: str, unit_id: str, unit: str) -> None:
    """Connect with tokens in the query string every way a client might."""
    async with websockets.connect(f"{ws_base}/v1/ws/console?token={operator}") as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
    async with websockets.connect(f"{ws_base}/v1/ws/mdt?after=0&token={unit}") as ws:
        assert json.loads(await ws.recv())["type"] == "replayed"
    async with websockets.connect(f"{ws_base}/v1/ws/mdt?token={FAKE}") as ws:
        assert json.loads(await ws.recv())["error"] == "Unauthorized"
        await ws.wait_closed()
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        await http.get(f"/v1/units?token={operator}&api_key={FAKE}")
        await http.get(f"/v1/units/{unit_id}?access_token={unit}")


def _assert_clean(output: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in output, f"a token is in the log:\n{output}"
    # The lines that used to carry them were written, redacted.
    assert f"/v1/ws/console?token={REDACTED}" in output, output
    assert f"/v1/ws/mdt?after=0&token={REDACTED}" in output, output
    assert f"api_key={REDACTED}" in output, output


def _spawn_server(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``erss serve --demo`` on ``port``, its stdout and stderr into ``log_path``."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "dispatch.cli", "serve", "--demo", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_erss_serve_logs_no_token(settings: Settings, log_format: str) -> None:
    port = _free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="erss-redact-"))
    env = {
        **os.environ,
        "ERSS_DATABASE_URL": str(settings.database_url),
        "ERSS_REDIS_URL": str(settings.redis_url),
        "ERSS_DB_SCHEMA": settings.db_schema,
        "ERSS_REDIS_PREFIX": settings.redis_prefix,
        "ERSS_DATA_DIR": str(data_dir),
        "ERSS_LOG_FORMAT": log_format,
    }
    log_path = data_dir / "stderr.log"
    server = _spawn_server(port, env, log_path)
    try:
        base = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            if server.poll() is not None:
                raise AssertionError(f"erss serve exited:\n{log_path.read_text()}")
            try:
                async with httpx.AsyncClient(timeout=1) as http:
                    return (await http.get(f"{base}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await _wait_until(ready, 60, "erss serve did not answer /healthz")
        credentials = json.loads((data_dir / "demo-credentials.json").read_text())
        operator = credentials["operators"]["dispatcher"]
        unit_id, unit = next(iter(credentials["units"].items()))
        await _exercise(base, f"ws://127.0.0.1:{port}", operator, unit_id, unit)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
    output = log_path.read_text()
    _assert_clean(output, [operator, unit, FAKE])
    if log_format == "json":
        records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert any(r["logger"] == "uvicorn.access" for r in records), output
        assert any("WebSocket" in r["message"] for r in records), output


async def test_uvicorn_default_logging_is_redacted_too(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """A server started as tests and benches start it: uvicorn's own handlers."""
    from tests.conftest import stop_server

    assert settings.database_url
    from dispatch.db import create_pool, migrate
    from dispatch.demo import load_demo

    pool = await create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, settings.db_schema)
            credentials = await load_demo(conn, base_url="http://127.0.0.1")
    finally:
        await pool.close()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="info")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()
        return bool(server.started)

    await _wait_until(started, 30, "uvicorn did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    operator = credentials["operators"]["dispatcher"]
    unit_id, unit = next(iter(credentials["units"].items()))
    try:
        await _exercise(
            f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", operator, unit_id, unit
        )
    finally:
        await stop_server(server, task)
    captured = capfd.readouterr()
    _assert_clean(captured.out + captured.err, [operator, unit, FAKE])


def test_redact_covers_query_strings_headers_json_and_urls() -> None:
    cases = {
        "GET /v1/ws/mdt?token=abc.DEF-1_2~x&after=0000000000000003": (
            f"GET /v1/ws/mdt?token={REDACTED}&after=0000000000000003"
        ),
        "/x?after=1&access_token=a%2Fb&client_secret=s&X-Signature=sha256%3Dff": (
            f"/x?after=1&access_token={REDACTED}&client_secret={REDACTED}&X-Signature={REDACTED}"
        ),
        "Authorization: Bearer abc.def": f"Authorization: Bearer {REDACTED}",
        '{"type": "auth", "token": "sekret"}': f'{{"type": "auth", "token": "{REDACTED}"}}',
        "postgresql://postgres:pw@db:5432/erss": f"postgresql://postgres:{REDACTED}@db:5432/erss",
        "redis://:pw@cache:6379/0": f"redis://:{REDACTED}@cache:6379/0",
        "incident 7 queued after=0000000000000001 status=ok": (
            "incident 7 queued after=0000000000000001 status=ok"
        ),
    }
    for raw, clean in cases.items():
        assert redact(raw) == clean
        assert redact(clean) == clean  # applying it twice changes nothing


def test_filter_redacts_arguments_and_tracebacks_keeping_their_shape() -> None:
    try:
        raise ValueError(f"cannot open ws://h/v1/ws/mdt?token={FAKE}")
    except ValueError:
        record = logging.LogRecord(
            "uvicorn.access",
            logging.INFO,
            __file__,
            1,
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:1", "GET", f"/v1/units?token={FAKE}", "1.1", 401),
            sys.exc_info(),
        )
    assert RedactingFilter().filter(record)
    assert isinstance(record.args, tuple)
    assert record.args[4] == 401  # uvicorn's access formatter unpacks these
    formatted = logging.Formatter("%(message)s").format(record)
    assert FAKE not in formatted
    assert f"token={REDACTED}" in formatted
    assert "ValueError" in formatted


def test_extra_fields_are_redacted_in_json_lines() -> None:
    """``extra=`` fields become JSON fields of their own: named like a secret, or
    carrying one, they are redacted too; others are left alone."""
    from pythonjsonlogger.json import JsonFormatter

    record = logging.makeLogRecord(
        {
            "msg": "connected",
            "unit_token": FAKE,
            "url": f"ws://h/v1/ws/mdt?token={FAKE}",
            "incident_id": 7,
        }
    )
    assert RedactingFilter().filter(record)
    line = json.loads(JsonFormatter("%(message)s").format(record))
    assert FAKE not in json.dumps(line)
    assert line["unit_token"] == REDACTED
    assert line["url"] == f"ws://h/v1/ws/mdt?token={REDACTED}"
    assert line["incident_id"] == 7


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        # a secret's name alone, so every alternative of the list is drawn
        st.from_regex(rf"(?i){_SECRET_NAMES}", fullmatch=True),
        st.sampled_from(_RULES).flatmap(lambda rule: st.from_regex(rule, fullmatch=False)),
    )
)
def test_the_cheap_test_never_lets_a_secret_past_the_rules(text: str) -> None:
    """Whatever a rule matches, may_hold_secret says maybe: a cue it lacks would let
    that rule's secrets into the logs unredacted."""
    assert may_hold_secret(text)


def test_text_with_no_cue_skips_the_rules() -> None:
    line = '127.0.0.1:5555 - "POST /v1/gateways/panic HTTP/1.1" 202'
    assert not may_hold_secret(line)
    long_s = "\u017fecret=abc"  # LATIN SMALL LETTER LONG S: not ASCII, the rules decide
    assert may_hold_secret(long_s)
    assert redact(long_s) == f"\u017fecret={REDACTED}"

"""Shared pieces of the end-to-end benchmarks (bench/e2e.py and the scripts beside it):
signed panic bodies, server subprocesses, the run's private storage, and printing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

import asyncpg
import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dispatch.demo import demo_zones, point_inside
from gateways.signing import sign
from geo.points import GeoPoint

BENCH_DIR = Path(__file__).resolve().parent
PANIC_PATH = "/v1/gateways/panic"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(ours: float, floor: float) -> float:
    return ours / floor if floor else math.nan


def fmt_ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def panic_body(trigger_id: str, point: GeoPoint) -> bytes:
    """A compact panic trigger (compact so that it fits one line of the wrk file).

    Every trigger comes from its own device: reports from one device within a window
    join one incident, and this measures new emergencies, not repeats.
    """
    payload = {
        "trigger_id": trigger_id,
        "device_id": f"device-{trigger_id}",
        "location": {"lat": round(point.lat, 6), "lon": round(point.lon, 6), "accuracy_m": 10.0},
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(secret: str, body: bytes, key: str) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-ERSS-Gateway": "panic",
        "X-ERSS-Timestamp": ts,
        "X-ERSS-Signature": sign(secret, ts, body),
        "Idempotency-Key": key,
    }


def sample_points(count: int, seed: int) -> list[GeoPoint]:
    """Points inside random demo zones; seeded so every run fires at the same places."""
    rng = random.Random(seed)
    zones = demo_zones()
    return [point_inside(rng.choice(zones), rng) for _ in range(count)]


# --------------------------------------------------------------------------- subprocesses


_ACCESS_LINE = re.compile(r'^INFO: +[\d.]+:\d+ - "')


class ServerProcess:
    """A server subprocess with its output in a log file; stop() always cleans up."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        # Output goes to a file, never to an unread pipe: uvicorn logs every request,
        # and a full pipe would stall the server mid-benchmark.
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def wait_healthy(self, base_url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=base_url, timeout=2, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer /healthz in {timeout_s} s:\n{self.tail()}")

    def tail(self, lines: int = 25) -> str:
        """The log's last lines, leaving out uvicorn's per-request access lines."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        kept = [line for line in text.splitlines() if not _ACCESS_LINE.match(line)]
        return "\n".join(kept[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


def keep_only_logs(workdir: Path) -> None:
    """Remove all but the logs: request files are large, the data folder holds secrets."""
    for path in workdir.iterdir():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.suffix != ".log":
            path.unlink()


def erss_command() -> list[str]:
    """The ``erss`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "erss"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dispatch.cli"]


# --------------------------------------------------------------------------- storage


@dataclass
class Storage:
    """Where this run keeps its data; drop() removes all of it."""

    database_url: str
    redis_url: str
    schema: str
    redis_prefix: str
    floor_schema: str
    floor_key: str

    async def connect(self, schema: str) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.database_url, server_settings={"search_path": schema}
        )
        return conn

    async def drop(self) -> None:
        try:
            conn = await asyncpg.connect(self.database_url)
            try:
                for schema in (self.schema, self.floor_schema):
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError) as err:
            print(f"warning: could not drop schemas {self.schema}*: {err}", file=sys.stderr)
        redis = aioredis.from_url(self.redis_url)
        try:
            keys = [k async for k in redis.scan_iter(match=f"{self.redis_prefix}*")]
            keys.append(self.floor_key.encode())
            await redis.delete(*keys)
        except (OSError, RedisError) as err:
            print(
                f"warning: could not delete Redis keys {self.redis_prefix}*: {err}", file=sys.stderr
            )
        finally:
            await redis.aclose()


async def max_incident_id(storage: Storage) -> int:
    conn = await storage.connect(storage.schema)
    try:
        value: int = await conn.fetchval("SELECT coalesce(max(id), 0) FROM incidents")
        return value
    finally:
        await conn.close()


async def incidents_after(storage: Storage, after_id: int) -> dict[str, int]:
    conn = await storage.connect(storage.schema)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM incidents WHERE id > $1 GROUP BY status", after_id
        )
        return {r["status"]: r["n"] for r in rows}
    finally:
        await conn.close()


_UNPUBLISHED = "SELECT count(*) FROM events WHERE position IS NULL OR NOT published"


async def relay_drain(storage: Storage, timeout_s: float) -> tuple[int, float]:
    """(events not yet on the Redis stream now, seconds until there are none; NaN if
    they never drain)."""
    conn = await storage.connect(storage.schema)
    try:
        start = time.monotonic()
        pending: int = await conn.fetchval(_UNPUBLISHED)
        left = pending
        while left:
            if time.monotonic() - start > timeout_s:
                return pending, math.nan
            await asyncio.sleep(0.02)
            left = await conn.fetchval(_UNPUBLISHED)
        return pending, time.monotonic() - start
    finally:
        await conn.close()


async def sample_backlog(storage: Storage, into: list[int], every_s: float = 0.25) -> None:
    """Append the relay's backlog (committed events not yet published) until cancelled."""
    conn = await storage.connect(storage.schema)
    try:
        while True:
            into.append(await conn.fetchval(_UNPUBLISHED))
            await asyncio.sleep(every_s)
    finally:
        await conn.close()


async def floor_rows(storage: Storage) -> int:
    conn = await storage.connect(storage.floor_schema)
    try:
        value: int = await conn.fetchval("SELECT count(*) FROM hits")
        return value
    finally:
        await conn.close()


# --------------------------------------------------------------------------- report


def machine_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def print_table(title: str, rows: Iterable[tuple[str, str]]) -> None:
    rows = list(rows)
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print("-" * len(title))
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """A server's environment: ours (so ERSS_* tuning such as ERSS_RELAY_POLL_S passes
    through), with where-to-store settings replaced by this run's private ones."""
    env = dict(os.environ)
    env.update(extra)
    return env


def run_loop(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run a bench's coroutine on uvloop when it is there: the bench's own loop times
    what it measures, and uvloop keeps its overhead in that out of the figures."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def exit_with(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main``'s code: 130 on Ctrl-C, and failures the bench diagnosed itself
    (a server that would not start, wrk failing) without a traceback."""
    try:
        sys.exit(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit(130)
    except RuntimeError as err:
        print(f"bench: {err}", file=sys.stderr)
        sys.exit(1)

"""End-to-end benchmark: gateway POST -> MDT offer latency, and throughput against a floor.

    .venv/bin/python bench/e2e.py            # defaults: about 80 s on 2 cores

What it does, all on loopback, in a private PostgreSQL schema and Redis key prefix that
are removed at the end:

1. Starts ``erss serve --demo`` as a subprocess and connects every demo unit's MDT
   websocket. Each MDT bot accepts the offers it gets, then reports ``on_scene`` and
   ``available`` (the shortest way back to duty), so the fleet keeps taking incidents.
2. Latency: fires N signed panic triggers at a fixed rate (open loop: a slow answer does
   not delay the next send) at random points inside the demo zones, and joins each POST's
   send time with the moment its ``assignment.offered`` event reaches the MDT.
3. Throughput: wrk replays pre-signed, all-distinct deliveries (bench/panic.lua) against
   the server and against bench/floor_app.py (one INSERT and one XADD per request), in
   alternating rounds with the same requests and wrk flags, and prints our rate as a
   fraction of the floor's. wrk, not a Python client, generates this load: on a 2-core
   machine an httpx client saturates near 200-300 requests/s. The MDTs are gone by then,
   so after the first few requests the fleet is busy and panics are queued.

Needs ``wrk`` on PATH (Debian: ``apt-get install wrk``). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

import asyncpg
import httpx
import redis.asyncio as aioredis
import websockets
from redis.exceptions import RedisError

from dispatch.demo import demo_zones, point_inside
from gateways.signing import sign
from geo.points import GeoPoint

BENCH_DIR = Path(__file__).resolve().parent
PANIC_LUA = BENCH_DIR / "panic.lua"
FLOOR_APP = BENCH_DIR / "floor_app.py"
PANIC_PATH = "/v1/gateways/panic"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
FREE_SEQUENCE = ("on_scene", "available")


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


# --------------------------------------------------------------------------- CPU accounting


def _proc_cpu_ticks() -> dict[int, tuple[str, int]]:
    """(command line, user+system ticks) of every process we can read; {} off Linux."""
    found: dict[int, tuple[str, int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
            # PostgreSQL backends show their client's address and port here.
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # Field 2 is the command name in parentheses, which may itself hold spaces.
        fields = raw[raw.rindex(")") + 2 :].split()
        name = cmdline.strip() or raw[raw.index("(") + 1 : raw.rindex(")")]
        found[int(entry.name)] = (name, int(fields[11]) + int(fields[12]))
    return found


def _local_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets a process holds (to find its PostgreSQL backends)."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


_BACKEND_PORT = re.compile(r"^postgres: .*\((\d+)\)")


def _machine_ticks() -> list[int]:
    """All CPUs' jiffies since boot (user nice system idle iowait irq softirq steal);
    zeros off Linux."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    except OSError:
        return [0] * 8
    # guest time is already counted in user, so only the first eight fields add up.
    return [int(v) for v in first] + [0] * (8 - len(first))


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSample:
    """CPU use during one wrk run, in percent of one core (200 % = both cores)."""

    by_role: dict[str, float]
    machine_busy_pct: float


class CpuMeter:
    """Who used the CPU between start() and stop(): the server, PostgreSQL, Redis, wrk.

    Only meant around one wrk run: any other child of ours that exits in between
    would be counted as wrk.
    """

    def __init__(self, server_pid: int) -> None:
        self._server_pid = server_pid
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._cores = os.cpu_count() or 1

    def _role(self, pid: int, name: str, server_ports: set[int]) -> str | None:
        if pid == self._server_pid:
            return "server (python)"
        if pid == os.getpid():
            return "bench (python)"
        backend = _BACKEND_PORT.match(name)
        if backend and int(backend[1]) in server_ports:
            return "postgresql (server's backends)"
        if name.startswith("postgres"):
            # Background writers, and other tenants' sessions on this shared server.
            return "postgresql (other)"
        if name.startswith("redis"):
            return "redis (shared)"
        return None

    def start(self) -> None:
        self._server_ports = _local_ports(self._server_pid)
        self._t0 = time.monotonic()
        self._procs0 = _proc_cpu_ticks()
        self._machine0 = _machine_ticks()
        self._children0 = _children_cpu_s()

    def stop(self) -> CpuSample:
        elapsed = time.monotonic() - self._t0
        procs1 = _proc_cpu_ticks()
        # The pool may have opened connections during the run.
        server_ports = self._server_ports | _local_ports(self._server_pid)
        delta = [b - a for a, b in zip(self._machine0, _machine_ticks(), strict=True)]
        by_role: Counter[str] = Counter()
        for pid, (name, ticks) in procs1.items():
            role = self._role(pid, name, server_ports)
            if role is None:
                continue
            # A process born during the run (wrk, a new backend) started from zero.
            before = self._procs0.get(pid, (name, 0))[1]
            by_role[role] += ticks - before
        scale = 100 / (self._tick * elapsed) if elapsed > 0 else 0.0
        shares = {k: v * scale for k, v in by_role.items()}
        # wrk has exited and been reaped by now, so /proc no longer shows it; its time
        # is in our children's rusage (the servers, still running, are not).
        if elapsed > 0:
            shares["wrk"] = 100 * (_children_cpu_s() - self._children0) / elapsed
        total = sum(delta)
        machine = 0.0
        if total > 0:
            to_pct = 100 * self._cores / total
            machine = (total - delta[3] - delta[4]) * to_pct
            # Loopback networking runs in softirq, charged to no process.
            shares["kernel softirq"] = (delta[5] + delta[6]) * to_pct
            shares["steal"] = delta[7] * to_pct
        # Whatever is left: other tenants of this shared machine, and processes that
        # came and went during the run.
        shares["other"] = max(0.0, machine - sum(shares.values()))
        return CpuSample(shares, machine)


# --------------------------------------------------------------------------- subprocesses


_ACCESS_LINE = re.compile(r'^INFO: +[\d.]+:\d+ - "')


class ServerProcess:
    """A server subprocess with its output in a log file; stop() always cleans up."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        # Output goes to a file, never to an unread pipe: uvicorn logs every request,
        # and a full pipe would stall the server mid-benchmark.
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
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


# --------------------------------------------------------------------------- latency phase


@dataclass
class MdtLog:
    """What every MDT bot saw, shared by all bots (one event loop, no locking needed)."""

    offered_at: dict[int, float] = field(default_factory=dict)
    offers: int = 0
    acks: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)
    new_offer: asyncio.Event = field(default_factory=asyncio.Event)


class MdtBot:
    """One unit's MDT: accepts every offer, then reports the job done (unit available)."""

    def __init__(self, unit_id: str, token: str, ws_url: str, log: MdtLog, free: bool) -> None:
        self.unit_id = unit_id
        self._token = token
        self._url = ws_url + "/v1/ws/mdt"
        self._log = log
        self._free = free
        self.ws: Any = None

    async def connect(self) -> None:
        # proxy=None: websockets otherwise honours *_PROXY variables, even for loopback.
        self.ws = await websockets.connect(
            self._url,
            additional_headers={"Authorization": f"Bearer {self._token}"},
            proxy=None,
            open_timeout=30,
            max_size=None,
        )
        first = json.loads(await self.ws.recv())
        if first.get("type") != "snapshot":
            raise RuntimeError(f"MDT {self.unit_id}: expected a snapshot first, got {first}")

    async def run(self) -> None:
        async for raw in self.ws:
            received = time.perf_counter()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "event":
                event = message["event"]
                if event["type"] == "assignment.offered" and event.get("unit_id") == self.unit_id:
                    await self._on_offer(event, received)
            elif kind == "ack":
                self._log.acks[str(message.get("request"))] += 1
            elif kind == "error":
                key = f"{message.get('request')}:{message.get('code')}"
                self._log.errors[key] += 1
                self._log.error_samples.setdefault(key, str(message.get("detail")))

    async def _on_offer(self, event: dict[str, Any], received: float) -> None:
        self._log.offers += 1
        self._log.offered_at.setdefault(int(event["incident_id"]), received)
        self._log.new_offer.set()
        assignment_id = event["data"]["assignment_id"]
        await self.ws.send(json.dumps({"type": "accept", "assignment_id": assignment_id}))
        if self._free:
            # The server handles one MDT's messages in order, so these land after the
            # accept without waiting for its ack. on_scene then available is the
            # shortest way back to duty the unit lifecycle allows (dispatch/lifecycle.py).
            for status in FREE_SEQUENCE:
                await self.ws.send(json.dumps({"type": "status", "status": status}))

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()


@dataclass
class PostResult:
    """One panic POST of the latency phase."""

    index: int
    sent: float
    answered: float
    http_status: int
    incident_id: int | None
    status: str | None
    error: str | None = None
    joined: bool = False  # the report joined an open incident (duplicate_of set)


async def post_panic(
    http: httpx.AsyncClient, secret: str, index: int, body: bytes, key: str
) -> PostResult:
    headers = signed_headers(secret, body, key)
    sent = time.perf_counter()
    try:
        response = await http.post(PANIC_PATH, content=body, headers=headers)
    except httpx.HTTPError as err:
        return PostResult(index, sent, time.perf_counter(), 0, None, None, repr(err))
    answered = time.perf_counter()
    if response.status_code != 202:
        return PostResult(
            index, sent, answered, response.status_code, None, None, response.text[:200]
        )
    answer = response.json()
    return PostResult(
        index,
        sent,
        answered,
        202,
        int(answer["incident_id"]),
        str(answer["status"]),
        joined=answer.get("duplicate_of") is not None,
    )


@dataclass
class LatencyReport:
    """Results of the latency phase."""

    target_rate: float
    posts: list[PostResult]
    mdt: MdtLog
    latencies: list[float]  # POST sent -> offer received, incidents offered at intake
    late_latencies: list[float]  # the same for incidents queued first and offered later
    answer_times: list[float]  # POST sent -> 202 received
    missing_offers: int
    send_rate: float
    sustained_rate: float
    units: int


async def latency_phase(
    base_url: str, credentials: dict[str, Any], args: argparse.Namespace, tag: str
) -> LatencyReport:
    ws_url = base_url.replace("http://", "ws://", 1)
    secret: str = credentials["gateways"]["panic"]
    log = MdtLog()
    bots = [
        MdtBot(unit_id, token, ws_url, log, free=not args.no_free_units)
        for unit_id, token in sorted(credentials["units"].items())
    ]
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(bot.connect() for bot in bots))
        tasks = [asyncio.create_task(bot.run(), name=f"mdt-{bot.unit_id}") for bot in bots]
        points = sample_points(args.panics, args.seed)
        bodies = [
            (panic_body(f"{tag}-lat-{i}", point), f"{tag}-lat-{i}")
            for i, point in enumerate(points)
        ]
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=base_url, timeout=30, limits=limits, trust_env=False
        ) as http:
            # Open loop: each POST gets its own task at its scheduled time, so a slow
            # answer shows up as latency instead of silently lowering the rate.
            start = time.perf_counter() + 0.05
            pending: list[asyncio.Task[PostResult]] = []
            for i, (body, key) in enumerate(bodies):
                delay = start + i / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(post_panic(http, secret, i, body, key)))
            posts = list(await asyncio.gather(*pending))
        offered = {p.incident_id for p in posts if p.status == "offered"}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.settle):
                while not offered <= log.offered_at.keys():
                    log.new_offer.clear()
                    await log.new_offer.wait()
        # Give late offers of queued incidents (units freed by the bots) a moment too.
        await asyncio.sleep(min(1.0, args.settle))
    finally:
        await asyncio.gather(*(bot.close() for bot in bots))
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(
            result, asyncio.CancelledError | websockets.ConnectionClosed
        ):
            print(f"warning: an MDT bot failed: {result!r}", file=sys.stderr)

    latencies: list[float] = []
    late: list[float] = []
    for post in posts:
        if post.incident_id is None or post.incident_id not in log.offered_at:
            continue
        delta = log.offered_at[post.incident_id] - post.sent
        (latencies if post.status == "offered" else late).append(delta)
    ok = [p for p in posts if p.http_status == 202]
    first_sent = min(p.sent for p in posts)
    send_span = max(p.sent for p in posts) - first_sent
    # Sustained: incidents fully handled (202 answered and, if offered, the offer
    # delivered) per second, from the first POST to the last of those moments.
    done_at = [p.answered for p in ok] + [log.offered_at[i] for i in offered if i in log.offered_at]
    span = max(done_at) - first_sent if done_at else math.nan
    return LatencyReport(
        target_rate=args.rate,
        posts=posts,
        mdt=log,
        latencies=latencies,
        late_latencies=late,
        answer_times=[p.answered - p.sent for p in ok],
        missing_offers=len(offered - log.offered_at.keys()),
        send_rate=(len(posts) - 1) / send_span if send_span > 0 else math.nan,
        sustained_rate=len(ok) / span if span and span > 0 else math.nan,
        units=len(bots),
    )


# --------------------------------------------------------------------------- wrk phase


def write_wrk_requests(path: Path, secret: str, count: int, label: str, seed: int) -> None:
    """Pre-sign ``count`` distinct deliveries, one tab-separated line each (panic.lua)."""
    points = sample_points(min(count, 2000), seed)
    ts = str(int(time.time()))
    with path.open("w") as out:
        for i in range(count):
            key = f"{label}-{i}"
            body = panic_body(key, points[i % len(points)])
            out.write(f"{ts}\t{sign(secret, ts, body)}\t{key}\t{body.decode()}\n")


_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass
class WrkResult:
    """What one wrk run reported."""

    requests: int
    seconds: float
    rps: float
    non_2xx: int
    socket_errors: str
    statuses: dict[int, int]
    sent: int
    distinct: int
    replays: int
    latency_s: dict[str, float]
    cpu: CpuSample | None
    output: str

    @property
    def ok_rps(self) -> float:
        """2xx answers per second: what counts when some requests were refused."""
        ok = sum(n for code, n in self.statuses.items() if 200 <= code < 300)
        return ok / self.seconds if self.seconds else math.nan


def parse_wrk(output: str, cpu: CpuSample | None) -> WrkResult:
    def search(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, output, re.MULTILINE)

    rps = search(r"^Requests/sec:\s+([\d.]+)")
    total = search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),")
    if rps is None or total is None:
        raise RuntimeError(f"could not read wrk's report:\n{output}")
    non_2xx = search(r"Non-2xx or 3xx responses: (\d+)")
    sock = search(r"Socket errors: (.*)$")
    counts = search(r"^ERSS_BENCH sent=(\d+) distinct=(\d+) replays=(\d+)")
    statuses = {
        int(m[1]): int(m[2]) for m in re.finditer(r"^ERSS_BENCH status (\d+)=(\d+)", output, re.M)
    }
    lat = search(r"^ERSS_BENCH latency_us p50=(\d+) p90=(\d+) p99=(\d+) max=(\d+)")
    latency = (
        {k: int(v) / 1e6 for k, v in zip(("p50", "p90", "p99", "max"), lat.groups(), strict=True)}
        if lat
        else {}
    )
    return WrkResult(
        requests=int(total[1]),
        seconds=float(total[2]) * _UNIT_S[total[3]],
        rps=float(rps[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sock[1] if sock else "none",
        statuses=statuses,
        sent=int(counts[1]) if counts else 0,
        distinct=int(counts[2]) if counts else 0,
        replays=int(counts[3]) if counts else 0,
        latency_s=latency,
        cpu=cpu,
        output=output,
    )


def wrk_argv(args: argparse.Namespace, url: str, requests_file: Path, duration: float) -> list[str]:
    return [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(PANIC_LUA),
        url + PANIC_PATH,
        "--",
        str(requests_file),
        str(args.threads),
    ]


async def run_wrk(argv: list[str], server_pid: int) -> WrkResult:
    meter = CpuMeter(server_pid)
    meter.start()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    cpu = meter.stop()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with code {proc.returncode}:\n{text}")
    return parse_wrk(text, cpu)


async def wrk_warmup(
    url: str, server_pid: int, secret: str, args: argparse.Namespace, workdir: Path, label: str
) -> None:
    """Fill the connection pools and caches first; its requests are distinct too."""
    if args.warmup <= 0:
        return
    warm_file = workdir / f"{label}-warmup.tsv"
    write_wrk_requests(warm_file, secret, args.wrk_requests_per_s * args.warmup, label + "w", 1)
    try:
        await run_wrk(wrk_argv(args, url, warm_file, args.warmup), server_pid)
    finally:
        warm_file.unlink()


async def wrk_measure(
    name: str,
    url: str,
    server_pid: int,
    secret: str,
    args: argparse.Namespace,
    workdir: Path,
    label: str,
) -> WrkResult:
    """One measured wrk run with freshly signed requests (timestamps age from now on)."""
    requests_file = workdir / f"{label}.tsv"
    write_wrk_requests(
        requests_file, secret, args.wrk_requests_per_s * args.duration, label + "m", 2
    )
    argv = wrk_argv(args, url, requests_file, args.duration)
    print(f"  {name}: {' '.join(argv)}", file=sys.stderr)
    try:
        return await run_wrk(argv, server_pid)
    finally:
        requests_file.unlink()


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


def print_table(title: str, rows: Iterable[tuple[str, str]]) -> None:
    rows = list(rows)
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print("-" * len(title))
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def cpu_text(cpu: CpuSample | None) -> str:
    if cpu is None or not cpu.by_role:
        return "n/a"
    ranked = sorted(cpu.by_role.items(), key=lambda x: -x[1])
    parts = [f"{role} {pct:.0f}%" for role, pct in ranked if pct >= 1]
    return ", ".join(parts) + f"; machine {cpu.machine_busy_pct:.0f}% of {os.cpu_count()}00%"


def wrk_rows(result: WrkResult, incidents: dict[str, int] | None) -> list[tuple[str, str]]:
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses.items()))
    rows = [
        ("requests/s (wrk)", f"{result.rps:.0f}"),
        ("2xx/s", f"{result.ok_rps:.0f}"),
        ("requests", f"{result.requests} in {result.seconds:.1f} s ({statuses or 'n/a'})"),
        ("replayed keys", f"{result.replays} of {result.sent} sent ({result.distinct} distinct)"),
        ("non-2xx", str(result.non_2xx)),
        ("socket errors", result.socket_errors),
        (
            "latency p50/p90/p99",
            " / ".join(fmt_ms(result.latency_s.get(k, math.nan)) for k in ("p50", "p90", "p99")),
        ),
        ("CPU (% of one core)", cpu_text(result.cpu)),
    ]
    if incidents is not None:
        rows.append(
            ("incidents created", ", ".join(f"{k}: {v}" for k, v in sorted(incidents.items())))
        )
    return rows


def median_run(runs: list[WrkResult]) -> WrkResult:
    """The run with the median 2xx rate (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r.ok_rps)
    return ordered[(len(ordered) - 1) // 2]


def _other_cpu(run: WrkResult) -> str:
    if run.cpu is None:
        return "n/a"
    return f"{run.cpu.by_role.get('other', 0.0):.0f}%"


def print_rounds(args: argparse.Namespace, ours: list[WrkResult], floor: list[WrkResult]) -> None:
    title = (
        f"Throughput: wrk -t{args.threads} -c{args.connections} -d{args.duration}s,"
        " rounds alternate erss and floor"
    )
    print(f"\n{title}\n{'-' * len(title)}")
    print(f"  {'round':<6} {'erss 2xx/s':>10} {'floor 2xx/s':>11} {'ratio':>6}  other tenants' CPU")
    for n, (o, f) in enumerate(zip(ours, floor, strict=True), 1):
        print(
            f"  {n:<6} {o.ok_rps:>10.0f} {f.ok_rps:>11.0f} {ratio(o.ok_rps, f.ok_rps):>6.2f}"
            f"  {_other_cpu(o)} / {_other_cpu(f)}"
        )


def print_latency(report: LatencyReport) -> None:
    lat = report.latencies
    posts = report.posts
    http_codes = Counter(p.http_status for p in posts)
    statuses = Counter(p.status for p in posts if p.status)
    rows = [
        ("panics sent", f"{len(posts)} to {report.units} connected MDTs"),
        ("HTTP answers", ", ".join(f"{c}: {n}" for c, n in sorted(http_codes.items()))),
        ("incident status at 202", ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))),
        ("joined an open incident", str(sum(p.joined for p in posts))),
        ("target / achieved send rate", f"{report.target_rate:.1f} / {report.send_rate:.1f} /s"),
        ("sustained rate", f"{report.sustained_rate:.1f} incidents/s"),
        (
            "POST -> MDT offer p50/p95/p99",
            " / ".join(fmt_ms(percentile(lat, p)) for p in (50, 95, 99))
            + f"  (max {fmt_ms(max(lat) if lat else math.nan)}, n={len(lat)})",
        ),
        (
            "POST -> 202 p50/p95/p99",
            " / ".join(fmt_ms(percentile(report.answer_times, p)) for p in (50, 95, 99)),
        ),
        ("offers never delivered", str(report.missing_offers)),
        (
            "queued, offered later",
            f"{len(report.late_latencies)}"
            + (
                f" (POST -> offer p50 {fmt_ms(percentile(report.late_latencies, 50))})"
                if report.late_latencies
                else ""
            ),
        ),
        ("MDT acks", ", ".join(f"{k}: {v}" for k, v in sorted(report.mdt.acks.items())) or "none"),
        (
            "MDT errors",
            ", ".join(f"{k}: {v}" for k, v in sorted(report.mdt.errors.items())) or "none",
        ),
    ]
    errors = [p.error for p in posts if p.error]
    if errors:
        rows.append(("first POST error", errors[0] or ""))
    print_table("Latency: gateway POST -> assignment.offered on the MDT (httpx, open loop)", rows)
    for key, detail in report.mdt.error_samples.items():
        print(f"    {key}: {detail}")
    if any(k.startswith("status:") for k in report.mdt.errors):
        print(
            "  note: the server refused the MDT 'status' message, so every accepted unit stays"
            " dispatched; once the fleet is used up, incidents are queued, not offered."
        )


# --------------------------------------------------------------------------- main


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """A server's environment: ours (so ERSS_* tuning such as ERSS_RELAY_POLL_S passes
    through), with where-to-store settings replaced by this run's private ones."""
    env = dict(os.environ)
    env.update(extra)
    return env


async def bench(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM cancels the run like Ctrl-C does, so every cleanup below still happens.
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)

    tag = secrets.token_hex(4)
    workdir = Path(tempfile.mkdtemp(prefix="erss-bench-"))
    keep_logs = False
    servers: list[ServerProcess] = []
    embedded: Any = None
    storage: Storage | None = None
    try:
        if args.embedded:
            from dispatch.embedded import start_embedded

            embedded = start_embedded(workdir / "services", database=True, redis=True)
            database_url, redis_url = embedded.database_url, embedded.redis_url
        else:
            database_url, redis_url = args.database_url, args.redis_url
        storage = Storage(
            database_url=database_url,
            redis_url=redis_url,
            schema=f"bench_{tag}",
            redis_prefix=f"bench_{tag}:",
            floor_schema=f"bench_{tag}_floor",
            floor_key=f"bench_{tag}_floor:hits",
        )

        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        data_dir = workdir / "data"
        server = ServerProcess(
            "erss serve",
            [*erss_command(), "serve", "--demo", "--host", "127.0.0.1", "--port", str(port)],
            child_env(
                {
                    "ERSS_DATABASE_URL": database_url,
                    "ERSS_REDIS_URL": redis_url,
                    "ERSS_DB_SCHEMA": storage.schema,
                    "ERSS_REDIS_PREFIX": storage.redis_prefix,
                    "ERSS_DATA_DIR": str(data_dir),
                }
            ),
            workdir / "erss.log",
        )
        servers.append(server)
        print(f"starting: {' '.join(server.argv)}  (schema {storage.schema})", file=sys.stderr)
        server.start()
        await server.wait_healthy(base_url, args.start_timeout)
        credentials = json.loads((data_dir / "demo-credentials.json").read_text())
        secret: str = credentials["gateways"]["panic"]

        print(
            f"latency phase: {args.panics} panics at {args.rate}/s, "
            f"{len(credentials['units'])} MDTs",
            file=sys.stderr,
        )
        latency = await latency_phase(base_url, credentials, args, tag)

        floor_port = free_port()
        floor_url = f"http://127.0.0.1:{floor_port}"
        floor = ServerProcess(
            "floor",
            [sys.executable, str(FLOOR_APP), "--port", str(floor_port)],
            child_env(
                {
                    "FLOOR_DATABASE_URL": database_url,
                    "FLOOR_REDIS_URL": redis_url,
                    "FLOOR_DB_SCHEMA": storage.floor_schema,
                    "FLOOR_REDIS_KEY": storage.floor_key,
                }
            ),
            workdir / "floor.log",
        )
        servers.append(floor)
        floor.start()
        await floor.wait_healthy(floor_url, args.start_timeout)

        print(f"throughput phase (wrk): {args.rounds} rounds of erss then floor", file=sys.stderr)
        await wrk_warmup(base_url, server.pid, secret, args, workdir, f"{tag}-o")
        await wrk_warmup(floor_url, floor.pid, secret, args, workdir, f"{tag}-f")
        before = await max_incident_id(storage)
        ours_runs: list[WrkResult] = []
        floor_runs: list[WrkResult] = []
        backlog: list[int] = []
        drains: list[tuple[int, float]] = []
        # Alternating short runs, rather than one long run of each, so that the load
        # other tenants put on this shared machine weighs on both sides alike.
        for n in range(args.rounds):
            # The relay's backlog during the run tells whether events (and so offers)
            # keep flowing to the websockets at this rate, not only the HTTP answers.
            sampler = asyncio.create_task(sample_backlog(storage, backlog))
            try:
                ours_runs.append(
                    await wrk_measure(
                        "erss", base_url, server.pid, secret, args, workdir, f"{tag}-o{n}"
                    )
                )
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            drains.append(await relay_drain(storage, 30))
            floor_runs.append(
                await wrk_measure(
                    "floor", floor_url, floor.pid, secret, args, workdir, f"{tag}-f{n}"
                )
            )
        ours_incidents = await incidents_after(storage, before)
        stored = await floor_rows(storage)

        print_latency(latency)
        print_rounds(args, ours_runs, floor_runs)
        ours = median_run(ours_runs)
        ours_rows = wrk_rows(ours, ours_incidents)
        ours_rows.append(
            (
                "relay backlog during runs",
                f"max {max(backlog, default=0)}, median {percentile(backlog, 50):.0f} events"
                f" ({len(backlog)} samples)",
            )
        )
        worst_pending, worst_drain = max(drains, key=lambda d: (math.isnan(d[1]), d[1]))
        ours_rows.append(
            (
                "relay after wrk stopped",
                f"{worst_pending} events pending, published within "
                + ("n/a (timed out)" if math.isnan(worst_drain) else f"{worst_drain:.2f} s")
                + " (worst round)",
            )
        )
        print_table("erss, median round (incidents: all rounds)", ours_rows)
        floor_result = median_run(floor_runs)
        floor_rows_ = wrk_rows(floor_result, None)
        floor_rows_.append(("rows stored", f"{stored} (all rounds and warm-up)"))
        print_table("floor, one INSERT + one XADD, median round", floor_rows_)
        ours_rps = percentile([r.ok_rps for r in ours_runs], 50)
        floor_rps = percentile([r.ok_rps for r in floor_runs], 50)
        ratios = [ratio(o.ok_rps, f.ok_rps) for o, f in zip(ours_runs, floor_runs, strict=True)]
        print_table(
            "Summary",
            [
                (
                    "POST -> offer p50/p95/p99",
                    " / ".join(fmt_ms(percentile(latency.latencies, p)) for p in (50, 95, 99))
                    + f" at {latency.target_rate:g}/s",
                ),
                ("sustained rate (latency phase)", f"{latency.sustained_rate:.1f} /s"),
                ("erss 2xx/s (median)", f"{ours_rps:.0f}"),
                ("floor 2xx/s (median)", f"{floor_rps:.0f}"),
                (
                    "erss / floor",
                    f"{ratio(ours_rps, floor_rps):.2f}"
                    f" (rounds: {min(ratios):.2f} to {max(ratios):.2f})",
                ),
            ],
        )
        if args.show_wrk:
            for name, runs in (("erss", ours_runs), ("floor", floor_runs)):
                for n, run in enumerate(runs, 1):
                    print(f"\n--- wrk output, {name} round {n} ---\n{run.output}")
        return 0
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("\ninterrupted; stopping everything", file=sys.stderr)
        raise
    except BaseException:
        keep_logs = True
        for proc in servers:
            print(f"\n--- last lines of {proc.name} ({proc.log_path}) ---", file=sys.stderr)
            print(proc.tail(), file=sys.stderr)
        raise
    finally:
        for proc in servers:
            proc.stop()
        if storage is not None:
            await storage.drop()
        if embedded is not None:
            embedded.stop()
        if keep_logs:
            keep_only_logs(workdir)
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="End-to-end benchmark: POST -> MDT offer latency, and wrk throughput "
        "against a one-INSERT-one-XADD floor.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ERSS_BENCH_DATABASE_URL")
        or os.environ.get("ERSS_TEST_DATABASE_URL")
        or DEFAULT_DATABASE_URL,
        help="PostgreSQL to use (a private schema is created and dropped); env "
        "ERSS_BENCH_DATABASE_URL",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("ERSS_BENCH_REDIS_URL")
        or os.environ.get("ERSS_TEST_REDIS_URL")
        or DEFAULT_REDIS_URL,
        help="Redis to use (keys under a private prefix, deleted at the end); env "
        "ERSS_BENCH_REDIS_URL",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="start the project's embedded PostgreSQL and Redis instead of using the URLs",
    )
    latency = parser.add_argument_group("latency phase")
    latency.add_argument("-n", "--panics", type=int, default=300, help="panics to fire")
    latency.add_argument("--rate", type=float, default=20.0, help="panics per second")
    latency.add_argument("--seed", type=int, default=112, help="seed for the panic locations")
    latency.add_argument(
        "--settle", type=float, default=5.0, help="seconds to wait for the last offers"
    )
    latency.add_argument(
        "--no-free-units",
        action="store_true",
        help="MDTs accept offers but never finish the job, so the fleet runs out",
    )
    wrk = parser.add_argument_group("throughput phase (wrk)")
    wrk.add_argument("-t", "--threads", type=int, default=2, help="wrk threads")
    wrk.add_argument("-c", "--connections", type=int, default=32, help="wrk connections")
    wrk.add_argument("-d", "--duration", type=int, default=8, help="seconds per measured run")
    wrk.add_argument(
        "-r", "--rounds", type=int, default=3, help="measured runs of each, alternating"
    )
    wrk.add_argument(
        "--warmup", type=int, default=2, help="seconds of wrk warm-up per server, before the rounds"
    )
    wrk.add_argument(
        "--wrk-requests-per-s",
        type=int,
        default=5000,
        help="distinct pre-signed requests generated per second of run; beyond them wrk "
        "replays keys (reported)",
    )
    wrk.add_argument("--show-wrk", action="store_true", help="print wrk's full output")
    parser.add_argument("--start-timeout", type=float, default=60.0, help="seconds to start")
    args = parser.parse_args(argv)
    for name in ("panics", "rate", "rounds", "duration", "threads", "connections"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.connections < args.threads:
        parser.error("wrk needs at least one connection per thread")
    return args


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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not on PATH (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    return run_loop(bench(args))


if __name__ == "__main__":
    exit_with(main)

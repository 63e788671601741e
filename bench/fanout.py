"""Fan-out benchmark: thousands of MDT and console websockets on one server instance.

    .venv/bin/python bench/fanout.py                          # 10,000 MDTs, 100 consoles
    .venv/bin/python bench/fanout.py --mdts 500 --consoles 10 --duration 15   # smoke run
    .venv/bin/python bench/fanout.py --deflate                # per-message compression on
    .venv/bin/python bench/fanout.py --storm 1000 --duration 90   # + a reconnect storm

What it does, all on loopback, in a private PostgreSQL schema and Redis key prefix that
are removed at the end (the same housekeeping as bench/e2e.py, whose helpers it uses):

1. Writes a fleet of ``--mdts`` units with tokens (random points inside the demo zones,
   ``--available-share`` of them on duty, the rest off duty) and ``--consoles``
   city-wide operators into a fresh schema, then starts ``erss serve --demo`` on it as
   a subprocess (the demo's own 51 units are put off duty: no MDT answers for them).
2. Spreads the clients over worker processes (bench/fanout_worker.py), each with its
   own event loop, and connects the MDTs, then the consoles, ``--window`` handshakes at
   a time. Server RSS before and after gives the memory per connection.
3. MDTs send a location every ``--ping-interval`` seconds (10 s, the field norm). After
   one full interval the server's CPU is measured with pings only, then with a steady
   stream of signed panics (``--rate``, open loop) near on-duty units.
4. Delivery latency is POST sent -> ``incident.created`` read on every console, and POST
   sent -> ``assignment.offered`` read on the offered unit's MDT (an MDT sees only its
   own unit's events). The MDT accepts, then reports on_scene and available, so the
   fleet keeps taking incidents, as in bench/e2e.py.
5. With ``--storm N``, N more consoles connect at once ``--storm-at`` seconds into the
   steady phase, and the deliveries are also reported split by the storm's window
   (bench/fanout_storm.py says how).

See docs/benchmarks.md ("Fan-out") for figures and what they mean.
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
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import fanout_storm as storm
import httpx
import redis.asyncio as aioredis
import websockets

# bench/ is not a package: run as a script, this file's folder is on sys.path, so the
# end-to-end benchmark's helpers (server process, storage, CPU accounting, signed
# panics) are imported from it rather than copied.
from e2e import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    CpuMeter,
    CpuSample,
    PostResult,
    ServerProcess,
    Storage,
    _proc_cpu_ticks,
    child_env,
    erss_command,
    exit_with,
    fmt_ms,
    free_port,
    keep_only_logs,
    panic_body,
    percentile,
    post_panic,
    print_table,
    run_loop,
    sample_backlog,
)

from dispatch.auth import hash_token, new_secret
from dispatch.db import create_pool, migrate
from dispatch.demo import demo_zones, point_inside, save_zones
from dispatch.keys import RedisKeys
from geo.points import GeoPoint
from geo.zones import ZoneIndex

WORKER = Path(__file__).resolve().parent / "fanout_worker.py"
# Clients per worker process when --workers is not given: enough that each worker's
# loop stays far from busy (10,100 clients -> 5 workers), few enough processes that
# their interpreters do not crowd two cores.
CLIENTS_PER_WORKER = 2500
# Descriptors the server needs besides client sockets: listening socket, pool, Redis,
# log, the interpreter's own files.
SERVER_SPARE_FDS = 100


# --------------------------------------------------------------------------- /proc


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def kib(value: float) -> str:
    return f"{value / 1024:.1f} KiB"


class FanoutCpuMeter(CpuMeter):
    """bench/e2e.py's per-role CPU accounting, with the client workers as their own role
    (they share the two cores with the server, so their share matters)."""

    def __init__(
        self,
        server_pids: Sequence[int],
        worker_pids: Sequence[int],
        storm_pids: Sequence[int] = (),
    ) -> None:
        super().__init__(server_pids[0])
        self._servers = set(server_pids)
        self._server_order = list(server_pids)
        self._workers = set(worker_pids)
        self._storm = set(storm_pids)
        self.top_others: list[tuple[str, float]] = []
        self._cpu0: dict[int, float] = {}
        self.by_instance: list[float] = []  # % of one core, in server_pids' order

    def _role(self, pid: int, name: str, server_ports: set[int]) -> str | None:
        if pid in self._workers:
            return "client workers (python)"
        if pid in self._storm:
            return storm.STORM_ROLE
        if pid in self._servers:
            # Every instance counts as the server; PostgreSQL backends are told apart
            # by the first instance's ports only (the others' show as "other").
            return "server (python)"
        return super()._role(pid, name, server_ports)

    def start(self) -> None:
        self._cpu0 = {pid: cpu_seconds(pid) for pid in self._server_order}
        super().start()

    def stop(self) -> CpuSample:
        ticks = _proc_cpu_ticks()
        elapsed = time.monotonic() - self._t0
        sample = super().stop()
        self.by_instance = [
            (cpu_seconds(pid) - before) / elapsed * 100 if elapsed > 0 else math.nan
            for pid, before in self._cpu0.items()
        ]
        # e2e's meter charges exited children to wrk; no child exits here.
        sample.by_role.pop("wrk", None)
        # "other" is whatever no role claims: name the biggest, so that another
        # tenant's test run is told apart from a process this benchmark forgot.
        others: Counter[str] = Counter()
        for pid, (name, now) in ticks.items():
            if self._role(pid, name, self._server_ports) is None:
                before = self._procs0.get(pid, (name, 0))[1]
                others[" ".join(name.split()[:2])[:60]] += now - before
        scale = 100 / (os.sysconf("SC_CLK_TCK") * elapsed) if elapsed > 0 else 0.0
        self.top_others = [(name, n * scale) for name, n in others.most_common(3) if n > 0]
        return sample


def cpu_rows(
    label: str, sample: CpuSample, others: list[tuple[str, float]]
) -> list[tuple[str, str]]:
    ranked = sorted(sample.by_role.items(), key=lambda x: -x[1])
    parts = ", ".join(f"{role} {pct:.0f}%" for role, pct in ranked if pct >= 0.5)
    named = "; ".join(f"{name} {pct:.0f}%" for name, pct in others if pct >= 1)
    return [
        (label, parts),
        (
            "",
            f"machine busy {sample.machine_busy_pct:.0f}% of {os.cpu_count()}00%"
            + (f"; biggest others: {named}" if named else ""),
        ),
    ]


# --------------------------------------------------------------------------- fleet


@dataclass(frozen=True, slots=True)
class FleetUnit:
    """A benchmark unit: placed inside a demo zone, with its own MDT token."""

    id: str
    agency: str
    zone_id: str
    lat: float
    lon: float
    status: str
    token: str


def make_fleet(count: int, available_share: float, seed: int) -> list[FleetUnit]:
    """``count`` units spread evenly over the demo zones; two police to one ambulance,
    as in the demo fleet; ``available_share`` of them on duty."""
    rng = random.Random(seed)
    zones = sorted(demo_zones(), key=lambda z: z.id)
    fleet = []
    for n in range(count):
        zone = zones[n % len(zones)]
        point = point_inside(zone, rng)
        fleet.append(
            FleetUnit(
                id=f"fan-{n:05d}",
                agency="ambulance" if n % 3 == 2 else "police",
                zone_id=zone.id,
                lat=point.lat,
                lon=point.lon,
                status="available" if rng.random() < available_share else "off_duty",
                token=new_secret(),
            )
        )
    return fleet


async def prepare_schema(
    storage: Storage, fleet: list[FleetUnit], console_tokens: dict[str, str]
) -> None:
    """Migrate this run's schema and write the zones, units and console operators into
    it before the server starts. The server then builds its live index of available
    units (Redis) from PostgreSQL when its relay takes the lead at start-up, as it would
    over a real fleet; units added behind a running server's back would be missing
    from that index until their status changed. ``--demo`` then adds the demo city's
    own units and credentials on top (existing rows are left alone)."""
    now = datetime.now(UTC)
    # The server's own pool factory: its connections encode JSON columns (zone shapes).
    pool = await create_pool(storage.database_url, storage.schema, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await migrate(conn, storage.schema)
            await save_zones(conn, demo_zones())
            await conn.copy_records_to_table(
                "units",
                schema_name=storage.schema,
                columns=[
                    "id",
                    "callsign",
                    "agency",
                    "status",
                    "home_zone_id",
                    "zone_id",
                    "lat",
                    "lon",
                    "position_at",
                    "token_hash",
                ],
                records=[
                    (
                        u.id,
                        u.id.upper(),
                        u.agency,
                        u.status,
                        u.zone_id,
                        u.zone_id,
                        u.lat,
                        u.lon,
                        now,
                        hash_token(u.token),
                    )
                    for u in fleet
                ],
            )
            # zones NULL: a city-wide console sees every incident.created.
            await conn.copy_records_to_table(
                "operators",
                schema_name=storage.schema,
                columns=["name", "token_hash", "zones"],
                records=[(name, hash_token(t), None) for name, t in console_tokens.items()],
            )
    finally:
        await pool.close()


async def retire_demo_units(base_url: str, operator_token: str, unit_ids: list[str]) -> None:
    """The demo's own units have no MDT connected here: an operator puts them off duty
    through the API (events, so the live index follows), so that no offer goes to a
    unit nobody listens for."""
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {operator_token}"},
        timeout=30,
        trust_env=False,
    ) as http:
        for unit_id in unit_ids:
            response = await http.post(
                f"/v1/units/{unit_id}/status",
                json={"status": "off_duty", "reason": "fan-out benchmark: no MDT connected"},
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"could not put demo unit {unit_id} off duty: {response.status_code}"
                    f" {response.text[:200]}"
                )


def incident_points(fleet: list[FleetUnit], count: int, seed: int) -> list[GeoPoint]:
    """Panic locations a short way (up to ~150 m) from random on-duty police units, so
    every panic has a unit close by, as in a city where the fleet covers the ground."""
    rng = random.Random(seed)
    index = ZoneIndex(demo_zones())
    on_duty = [u for u in fleet if u.status == "available" and u.agency == "police"]
    if not on_duty:
        raise RuntimeError("no on-duty police unit: raise --available-share or --mdts")
    points = []
    for _ in range(count):
        unit = rng.choice(on_duty)
        point = GeoPoint(
            lat=unit.lat + rng.uniform(-0.0013, 0.0013), lon=unit.lon + rng.uniform(-0.0013, 0.0013)
        )
        # A point pushed outside every jurisdiction would be escalated, not offered.
        points.append(point if index.zone_of(point) else GeoPoint(lat=unit.lat, lon=unit.lon))
    return points


# --------------------------------------------------------------------------- workers


class WorkerProcess:
    """One bench/fanout_worker.py subprocess and its line protocol."""

    def __init__(self, index: int, workdir: Path) -> None:
        self.index = index
        self.job_path = workdir / f"worker-{index}.job.json"
        self.result_path = workdir / f"worker-{index}.result.json"
        self.log_path = workdir / f"worker-{index}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    async def start(self, job: dict[str, Any]) -> None:
        self.job_path.write_text(json.dumps(job))
        self._log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            str(self.job_path),
            str(self.result_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            # A "connected" answer lists every client's handshake time: thousands of
            # numbers on one line, past asyncio's default 64 KiB line limit.
            limit=2**24,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def answer(self) -> dict[str, Any]:
        """The worker's next JSON line; its log if it died instead."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            await self.proc.wait()
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker {self.index} exited ({self.proc.returncode}):\n{tail}")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") == "error":
            raise RuntimeError(f"worker {self.index}: {message.get('detail')}")
        return message

    async def command(self, line: str) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.answer()

    def result(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.result_path.read_text())
        return data

    async def stop(self) -> None:
        """Make sure the process is gone (only this worker's own pid is signalled)."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def worker_jobs(
    fleet: list[FleetUnit],
    console_tokens: dict[str, str],
    workers: int,
    ws_url: str,
    args: argparse.Namespace,
    first: int = 0,
) -> list[dict[str, Any]]:
    """Deal the clients round-robin, so every worker has MDTs and consoles alike and
    the console traffic (every event, to each console) is spread over all of them."""
    shares: list[list[dict[str, Any]]] = [[] for _ in range(workers)]
    # Consoles get workers of their own when there are several: each reads every event
    # and every position batch, and MDTs sharing a loop with them answered the server's
    # keepalives late enough to be closed (1011) under a reconnect storm.
    console_workers = 0
    if workers > 1 and console_tokens:
        share = len(console_tokens) / (len(fleet) + len(console_tokens))
        console_workers = min(workers - 1, max(1, round(workers * share)))
    mdt_workers = workers - console_workers
    for n, unit in enumerate(fleet):
        shares[n % mdt_workers].append(
            {"kind": "mdt", "name": unit.id, "token": unit.token, "lat": unit.lat, "lon": unit.lon}
        )
    for n, (name, token) in enumerate(sorted(console_tokens.items())):
        target = mdt_workers + n % console_workers if console_workers else n % workers
        shares[target].append({"kind": "console", "name": name, "token": token})
    window = max(1, math.ceil(args.window / workers))
    return [
        {
            "ws_url": ws_url,
            "clients": share,
            "window": window,
            "deflate": args.deflate,
            # 127.0.0.0/8 is all loopback on Linux: a source address per worker gives
            # each its own ~28,000 ephemeral ports towards the one server port.
            "source_ip": f"127.0.0.{10 + first + i}" if args.source_ips else None,
            "ping_interval_s": args.ping_interval,
            "open_timeout_s": args.open_timeout,
            "free_units": not args.no_free_units,
            "seed": args.seed * 1000 + first + i,
        }
        for i, share in enumerate(shares)
    ]


@dataclass
class ConnectPhase:
    """One batch of connections: how long, how many, what it cost the server."""

    kind: str
    wanted: int
    ok: int
    failures: Counter[str]
    seconds: float
    handshakes: list[float]
    server_cpu_s: float
    rss_before: int
    rss_after: int

    @property
    def rss_per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / self.ok if self.ok else math.nan


async def connect_phase(
    kind: str, wanted: int, workers: list[WorkerProcess], server_pids: list[int], settle_s: float
) -> ConnectPhase:
    """Connect every ``kind`` client; CPU and RSS are summed over the instances."""
    rss_before = sum(rss_bytes(pid) for pid in server_pids)
    cpu_before = sum(cpu_seconds(pid) for pid in server_pids)
    started = time.perf_counter()
    answers = await asyncio.gather(*(w.command(f"connect {kind}") for w in workers))
    seconds = time.perf_counter() - started
    cpu = sum(cpu_seconds(pid) for pid in server_pids) - cpu_before
    # Let the server finish the tail of its per-connection work (the last snapshots'
    # buffers, log lines) before reading its RSS.
    await asyncio.sleep(settle_s)
    failures: Counter[str] = Counter()
    handshakes: list[float] = []
    for answer in answers:
        failures.update(answer["failures"])
        handshakes.extend(answer["handshake_s"])
    return ConnectPhase(
        kind=kind,
        wanted=wanted,
        ok=sum(a["ok"] for a in answers),
        failures=failures,
        seconds=seconds,
        handshakes=handshakes,
        server_cpu_s=cpu,
        rss_before=rss_before,
        rss_after=sum(rss_bytes(pid) for pid in server_pids),
    )


async def warm_up_sockets(ws_url: str, unit_token: str, operator_token: str) -> None:
    """One MDT and one console connect and leave before the baseline RSS is read, so
    the code and caches every connection shares are not charged to the first ones."""
    for path, token in (("/v1/ws/mdt", unit_token), ("/v1/ws/console", operator_token)):
        async with websockets.connect(
            ws_url + path,
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
            proxy=None,
            max_size=None,
        ) as ws:
            await ws.recv()


# --------------------------------------------------------------------------- incidents


async def fire_panics(
    base_urls: list[str], secret: str, points: list[GeoPoint], rate: float, label: str
) -> list[PostResult]:
    """Open loop, as in bench/e2e.py: every POST starts at its scheduled time; with
    several instances, round robin over them (as a balancer in front would)."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
    clients = [
        httpx.AsyncClient(base_url=url, timeout=60, limits=limits, trust_env=False)
        for url in base_urls
    ]
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        start = time.perf_counter() + 0.05
        pending: list[asyncio.Task[PostResult]] = []
        for i, point in enumerate(points):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key = f"{label}-{i}"
            http = clients[i % len(clients)]
            pending.append(
                asyncio.create_task(post_panic(http, secret, i, panic_body(key, point), key))
            )
        return list(await asyncio.gather(*pending))


async def server_counts(storage: Storage) -> dict[str, int]:
    """What the server did with the pings: units in the Redis GEO index (every ping
    updates it) and track rows written by the periodic flush to PostgreSQL."""
    redis = aioredis.from_url(storage.redis_url)
    try:
        geo: int = await redis.zcard(RedisKeys(storage.redis_prefix).unit_positions)
    finally:
        await redis.aclose()
    conn = await storage.connect(storage.schema)
    try:
        track: int = await conn.fetchval("SELECT count(*) FROM unit_track")
        statuses = await conn.fetch("SELECT status, count(*) AS n FROM incidents GROUP BY status")
    finally:
        await conn.close()
    counts = {"geo_index_units": geo, "unit_track_rows": track}
    counts.update({f"incidents {r['status']}": r["n"] for r in statuses})
    return counts


# --------------------------------------------------------------------------- report


_LOG_STAMP = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ ")
_LOG_NUMBERS = re.compile(r"fan-\d+|\d+")


def server_log_summary(path: Path) -> Counter[str]:
    """Warnings and errors the server logged, counted by message with the timestamp,
    unit ids and numbers blanked: a dropped position or a failed stream read shows in
    the log before it shows in the latencies."""
    found: Counter[str] = Counter()
    with path.open(errors="replace") as log:
        for line in log:
            if " WARNING " in line or " ERROR " in line or line.startswith("ERROR:"):
                line = _LOG_STAMP.sub("", line.strip())
                found[_LOG_NUMBERS.sub("#", line)[:110]] += 1
    return found


def latency_row(values: list[float]) -> str:
    if not values:
        return "n/a (no samples)"
    return (
        " / ".join(fmt_ms(percentile(values, p)) for p in (50, 90, 99))
        + f"  (max {fmt_ms(max(values))}, n={len(values)})"
    )


def connect_rows(phase: ConnectPhase) -> list[tuple[str, str]]:
    rate = phase.ok / phase.seconds if phase.seconds else math.nan
    failed = phase.wanted - phase.ok
    rows = [
        (
            f"{phase.kind}s connected",
            f"{phase.ok} of {phase.wanted} in {phase.seconds:.1f} s ({rate:.0f}/s)"
            + (f"; failed {failed}: {dict(phase.failures)}" if failed else ""),
        ),
        ("  handshake + snapshot p50/p90/p99", latency_row(phase.handshakes)),
        (
            "  server CPU while connecting",
            f"{phase.server_cpu_s:.1f} s"
            + (f" ({phase.server_cpu_s / phase.ok * 1000:.2f} ms each)" if phase.ok else ""),
        ),
        (
            "  server RSS",
            f"{mib(phase.rss_before)} -> {mib(phase.rss_after)}"
            + (f": {kib(phase.rss_per_connection)} per {phase.kind}" if phase.ok else ""),
        ),
    ]
    return rows


@dataclass
class Deliveries:
    """Worker results joined with the POSTs of the measured phase."""

    console_latencies: list[float]
    console_spread: list[float]  # per incident: last console - first console
    console_expected: int
    mdt_latencies: list[float]
    offered_at_intake: int
    offers_missing: int
    late_offers: int
    events: Counter[str]
    acks: Counter[str]
    errors: Counter[str]
    error_samples: dict[str, str]
    closed: Counter[str]
    pings_sent: int
    ping_failures: int
    connected: Counter[str]


def join_results(results: list[dict[str, Any]], posts: list[PostResult]) -> Deliveries:
    sent = {p.incident_id: p.sent for p in posts if p.incident_id is not None}
    offered_now = {p.incident_id for p in posts if p.status == "offered"}
    by_incident: dict[int, list[float]] = defaultdict(list)
    console_latencies: list[float] = []
    first_offer: dict[int, float] = {}
    events: Counter[str] = Counter()
    acks: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    closed: Counter[str] = Counter()
    connected: Counter[str] = Counter()
    samples: dict[str, str] = {}
    pings = ping_failures = 0
    for result in results:
        for incident_id, received in result["created"]:
            if incident_id in sent:
                console_latencies.append(received - sent[incident_id])
                by_incident[incident_id].append(received)
        for incident_id, _unit, received in result["offered"]:
            if incident_id in sent:
                first_offer[incident_id] = min(received, first_offer.get(incident_id, math.inf))
        events.update(result["events"])
        acks.update(result["acks"])
        errors.update(result["errors"])
        closed.update(result["closed"])
        connected.update(result["connected"])
        for key, detail in result["error_samples"].items():
            samples.setdefault(key, detail)
        pings += result["pings_sent"]
        ping_failures += result["ping_failures"]
    mdt_latencies = [first_offer[i] - sent[i] for i in offered_now if i in first_offer]
    return Deliveries(
        console_latencies=console_latencies,
        console_spread=[max(t) - min(t) for t in by_incident.values()],
        console_expected=len(sent) * connected["console"],
        mdt_latencies=mdt_latencies,
        offered_at_intake=len(offered_now),
        offers_missing=len(offered_now - first_offer.keys()),
        late_offers=len(first_offer.keys() - offered_now),
        events=events,
        acks=acks,
        errors=errors,
        error_samples=samples,
        closed=closed,
        pings_sent=pings,
        ping_failures=ping_failures,
        connected=connected,
    )


# --------------------------------------------------------------------------- main


def server_command(args: argparse.Namespace, instance: int) -> list[str]:
    """``erss``, or ``erss`` under cProfile with ``--profile-server`` (the profile is
    written when the server stops, to FILE.<instance>)."""
    if args.profile_server:
        out = f"{args.profile_server}.{instance}"
        return [sys.executable, "-m", "cProfile", "-o", out, "-m", "dispatch.cli"]
    return erss_command()


def raise_fd_limit() -> int:
    """Soft descriptor limit up to the hard one; the server and workers inherit it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def worker_count(args: argparse.Namespace) -> int:
    if args.workers > 0:
        return args.workers
    return max(1, math.ceil((args.mdts + args.consoles) / CLIENTS_PER_WORKER))


async def bench(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM cancels the run like Ctrl-C does, so every cleanup below still happens.
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)

    fd_limit = raise_fd_limit()
    if args.mdts + args.consoles + SERVER_SPARE_FDS > fd_limit:
        print(
            f"warning: the descriptor limit is {fd_limit} (hard; raising it needs"
            f" CAP_SYS_RESOURCE), so one server process cannot hold"
            f" {args.mdts + args.consoles} websockets; expect failed connections",
            file=sys.stderr,
        )
    tag = secrets.token_hex(4)
    workdir = Path(tempfile.mkdtemp(prefix="erss-fanout-"))
    keep_logs = False
    servers: list[ServerProcess] = []
    workers: list[WorkerProcess] = []
    storm_workers: list[WorkerProcess] = []
    storage = Storage(
        database_url=args.database_url,
        redis_url=args.redis_url,
        schema=f"bench_{tag}",
        redis_prefix=f"bench_{tag}:",
        # Storage also drops bench/e2e.py's floor schema and key; nothing makes them here.
        floor_schema=f"bench_{tag}_floor",
        floor_key=f"bench_{tag}_floor:hits",
    )
    try:
        started = time.perf_counter()
        fleet = make_fleet(args.mdts, args.available_share, args.seed)
        console_tokens = {f"fan-console-{n:04d}": new_secret() for n in range(args.consoles)}
        storm_tokens = storm.operator_tokens(args.storm)
        await prepare_schema(storage, fleet, console_tokens | storm_tokens)
        on_duty = sum(u.status == "available" for u in fleet)
        print(
            f"fleet: {len(fleet)} units ({on_duty} on duty), {len(console_tokens)} console"
            + (f" and {len(storm_tokens)} storm" if storm_tokens else "")
            + f" operators, in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        # The storm's sockets must not be refused by the servers' websocket cap.
        cap = storm.socket_cap(args, fd_limit, SERVER_SPARE_FDS) if args.storm else None

        ports = [free_port() for _ in range(args.instances)]
        base_urls = [f"http://127.0.0.1:{port}" for port in ports]
        ws_urls = [f"ws://127.0.0.1:{port}" for port in ports]
        for n, port in enumerate(ports):
            # One PostgreSQL schema and one Redis prefix for all: one deployment. The
            # first instance loads the demo city; the others find it there.
            data_dir = workdir / f"data-{n}"
            env = {
                "ERSS_DATABASE_URL": storage.database_url,
                "ERSS_REDIS_URL": storage.redis_url,
                "ERSS_DB_SCHEMA": storage.schema,
                "ERSS_REDIS_PREFIX": storage.redis_prefix,
                "ERSS_DATA_DIR": str(data_dir),
                "ERSS_WS_PER_MESSAGE_DEFLATE": "true" if args.deflate else "false",
                **(cap.env() if cap else {}),
            }
            argv = [*server_command(args, n), "serve", "--demo"]
            server = ServerProcess(
                f"erss serve #{n}",
                [*argv, "--host", "127.0.0.1", "--port", str(port)],
                child_env(env),
                workdir / f"erss-{n}.log",
            )
            servers.append(server)
            print(f"starting: {' '.join(server.argv)}  (schema {storage.schema})", file=sys.stderr)
            server.start()
            await server.wait_healthy(base_urls[n], args.start_timeout)
        credentials = json.loads((workdir / "data-0" / "demo-credentials.json").read_text())
        secret: str = credentials["gateways"]["panic"]
        await retire_demo_units(
            base_urls[0], credentials["operators"]["dispatcher"], sorted(credentials["units"])
        )

        # Clients dealt round robin over the instances, each instance's over its own
        # workers (a worker talks to one instance).
        n_workers = max(args.instances, worker_count(args))
        per_instance = [n_workers // args.instances] * args.instances
        for n in range(n_workers % args.instances):
            per_instance[n] += 1
        jobs: list[dict[str, Any]] = []
        worker_instance: list[int] = []
        consoles_sorted = sorted(console_tokens.items())
        for n in range(args.instances):
            share_fleet = fleet[n :: args.instances]
            share_consoles = dict(consoles_sorted[n :: args.instances])
            jobs += worker_jobs(
                share_fleet, share_consoles, per_instance[n], ws_urls[n], args, first=len(jobs)
            )
            worker_instance += [n] * per_instance[n]
        workers = [WorkerProcess(i, workdir) for i in range(n_workers)]
        for worker, job in zip(workers, jobs, strict=True):
            await worker.start(job)
        await asyncio.gather(*(w.answer() for w in workers))  # "ready"
        if args.storm:
            # Idle until the storm; started now so that starting them costs nothing then.
            storm_jobs = storm.worker_jobs(storm_tokens, ws_urls, args, first=len(jobs))
            for n, (_instance, job) in enumerate(storm_jobs):
                storm_workers.append(WorkerProcess(len(jobs) + n, workdir))
                await storm_workers[-1].start(job)
            await asyncio.gather(*(w.answer() for w in storm_workers))

        demo_token = sorted(credentials["units"].values())[0]
        for ws_url in ws_urls:
            await warm_up_sockets(ws_url, demo_token, credentials["operators"]["dispatcher"])
        await asyncio.sleep(1.0)
        server_pids = [server.pid for server in servers]
        rss_start = sum(rss_bytes(pid) for pid in server_pids)
        print(
            f"connecting {args.mdts} MDTs over {n_workers} workers and {args.instances}"
            f" instance(s), {args.window} at a time",
            file=sys.stderr,
        )
        mdts = await connect_phase("mdt", args.mdts, workers, server_pids, args.settle_connect)
        print(f"  {mdts.ok} MDTs in {mdts.seconds:.1f} s; connecting consoles", file=sys.stderr)
        consoles = await connect_phase(
            "console", args.consoles, workers, server_pids, args.settle_connect
        )
        rss_connected = consoles.rss_after

        # Connected but silent: what the instances cost with no ping and no incident
        # (keepalives, the queue sweep, the relay's polls), charged to no ping below.
        idle_cpu0 = sum(cpu_seconds(pid) for pid in server_pids)
        idle_t0 = time.monotonic()
        await asyncio.sleep(args.idle_window)
        idle_pct = (
            (sum(cpu_seconds(pid) for pid in server_pids) - idle_cpu0)
            / (time.monotonic() - idle_t0)
            * 100
        )
        for answer in await asyncio.gather(*(w.command("ping") for w in workers)):
            assert answer["event"] == "pinging"
        pings_started = time.perf_counter()
        # Warm-up: a few panics (not measured) load the intake path's code and prepared
        # statements while every MDT reaches its first ping.
        points = incident_points(
            fleet, args.warmup_panics + int(args.rate * args.duration), args.seed + 1
        )
        print(f"pings started; warming up for {args.ping_interval:.0f} s", file=sys.stderr)
        warm = asyncio.create_task(
            fire_panics(base_urls, secret, points[: args.warmup_panics], 1.0, f"{tag}-warm")
        )
        await asyncio.sleep(args.ping_interval)
        warm_posts = await warm

        worker_pids = [w.pid for w in workers]
        storm_pids = [w.pid for w in storm_workers]
        meter = FanoutCpuMeter(server_pids, worker_pids, storm_pids)
        meter.start()
        await asyncio.sleep(args.idle_window)
        pings_only = meter.stop()
        pings_only_others = meter.top_others
        pings_only_instances = meter.by_instance

        measured = points[args.warmup_panics :]
        print(f"steady phase: {len(measured)} panics at {args.rate}/s with pings", file=sys.stderr)
        rss_samples: list[int] = []
        backlog: list[int] = []

        async def sample_rss() -> None:
            while True:
                rss_samples.append(sum(rss_bytes(pid) for pid in server_pids))
                await asyncio.sleep(1.0)

        samplers = [
            asyncio.create_task(sample_rss()),
            asyncio.create_task(sample_backlog(storage, backlog, every_s=0.5)),
        ]
        storm_task = None
        if args.storm:
            storm_task = asyncio.create_task(
                storm.run_storm(
                    storm_workers,
                    args.storm,
                    args.storm_at,
                    server_cpu=lambda: sum(cpu_seconds(pid) for pid in server_pids),
                    server_rss=lambda: sum(rss_bytes(pid) for pid in server_pids),
                    meter=FanoutCpuMeter(server_pids, worker_pids, storm_pids),
                )
            )
        meter = FanoutCpuMeter(server_pids, worker_pids, storm_pids)
        meter.start()
        try:
            posts = await fire_panics(base_urls, secret, measured, args.rate, f"{tag}-m")
            steady = meter.stop()
            steady_others = meter.top_others
            steady_instances = meter.by_instance
            await asyncio.sleep(args.settle)
            if storm_task is not None and not storm_task.done():
                print("storm still connecting after the steady phase; waiting", file=sys.stderr)
            storm_run = await storm_task if storm_task is not None else None
        finally:
            for task in samplers:
                task.cancel()
            if storm_task is not None:
                storm_task.cancel()  # done by now, unless the run failed
            await asyncio.gather(*samplers, return_exceptions=True)
        rss_end = sum(rss_bytes(pid) for pid in server_pids)
        counts = await server_counts(storage)

        for answer in await asyncio.gather(*(w.command("stop") for w in workers + storm_workers)):
            assert answer["event"] == "done"
        ping_seconds = time.perf_counter() - pings_started
        results = [w.result() for w in workers]
        storm_results = [w.result() for w in storm_workers]
        deliveries = join_results(results, posts)
        log_lines: Counter[str] = Counter()
        for server in servers:
            log_lines.update(server_log_summary(server.log_path))
        of_instance: list[list[dict[str, Any]]] = [[] for _ in range(args.instances)]
        for result, n in zip(results, worker_instance, strict=True):
            of_instance[n].append(result)
        instances = [
            InstanceFigures(
                mdts=sum(r["connected"]["mdt"] for r in mine),
                consoles=sum(r["connected"]["console"] for r in mine),
                pings=sum(r["pings_sent"] for r in mine),
                pings_only_pct=pings_only_instances[n],
                steady_pct=steady_instances[n],
            )
            for n, mine in enumerate(of_instance)
        ]

        report(
            args,
            n_workers=n_workers,
            on_duty=on_duty,
            rss_start=rss_start,
            rss_connected=rss_connected,
            rss_end=rss_end,
            rss_max=max(rss_samples, default=rss_end),
            phases=[mdts, consoles],
            pings_only=(pings_only, pings_only_others),
            steady=(steady, steady_others),
            posts=posts,
            warm_posts=warm_posts,
            deliveries=deliveries,
            ping_seconds=ping_seconds,
            counts=counts,
            log_lines=log_lines,
            backlog=backlog,
            fd_limit=fd_limit,
            instances=instances,
            idle_pct=idle_pct,
            worker_cpu=(
                pings_only.by_role.get("client workers (python)", math.nan),
                steady.by_role.get("client workers (python)", math.nan),
            ),
        )
        if storm_run is not None and cap is not None:
            storm.report(args, storm_run, cap, posts, results, storm_results, join_results, mib)
        return 0
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("\ninterrupted; stopping everything", file=sys.stderr)
        raise
    except BaseException:
        keep_logs = True
        for server in servers:
            print(f"\n--- last lines of {server.name} ({server.log_path}) ---", file=sys.stderr)
            print(server.tail(), file=sys.stderr)
        raise
    finally:
        await asyncio.gather(*(w.stop() for w in workers + storm_workers), return_exceptions=True)
        for server in servers:
            server.stop()
        await storage.drop()
        if keep_logs or args.keep_logs:
            keep_only_logs(workdir)
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class InstanceFigures:
    """One instance's clients, pings and CPU (% of one core) in the two windows."""

    mdts: int
    consoles: int
    pings: int
    pings_only_pct: float
    steady_pct: float


def instance_rows(
    instances: list[InstanceFigures], ping_seconds: float, rate: float
) -> list[tuple[str, str]]:
    """Per instance and in all: CPU, and its marginal cost per ping and per incident
    (panics are spread evenly by the round robin)."""
    rows = []
    share = rate / len(instances)
    for n, fig in enumerate(instances):
        ping_rate = fig.pings / ping_seconds if ping_seconds > 0 else math.nan
        per_ping = fig.pings_only_pct / 100 / ping_rate * 1000 if ping_rate else math.nan
        per_incident = (fig.steady_pct - fig.pings_only_pct) / 100 / share * 1000
        rows.append(
            (
                f"instance {n}",
                f"{fig.mdts} MDTs, {fig.consoles} consoles; CPU {fig.pings_only_pct:.0f}% pings"
                f" only ({ping_rate:.0f}/s, {per_ping:.2f} ms each), {fig.steady_pct:.0f}% with"
                f" panics ({per_incident:.0f} ms per incident it took)",
            )
        )
    total_idle = sum(f.pings_only_pct for f in instances)
    total_busy = sum(f.steady_pct for f in instances)
    rows.append(
        ("all instances", f"CPU {total_idle:.0f}% pings only, {total_busy:.0f}% with panics")
    )
    return rows


def report(
    args: argparse.Namespace,
    *,
    n_workers: int,
    on_duty: int,
    rss_start: int,
    rss_connected: int,
    rss_end: int,
    rss_max: int,
    phases: list[ConnectPhase],
    pings_only: tuple[CpuSample, list[tuple[str, float]]],
    steady: tuple[CpuSample, list[tuple[str, float]]],
    posts: list[PostResult],
    warm_posts: list[PostResult],
    deliveries: Deliveries,
    ping_seconds: float,
    counts: dict[str, int],
    log_lines: Counter[str],
    backlog: list[int],
    fd_limit: int,
    instances: list[InstanceFigures],
    idle_pct: float,
    worker_cpu: tuple[float, float],
) -> None:
    d = deliveries
    connected = sum(p.ok for p in phases)
    print_table(
        "Setup",
        [
            (
                "clients",
                f"{args.mdts} MDTs ({on_duty} on duty), {args.consoles} consoles,"
                f" {n_workers} worker processes",
            ),
            ("per-message deflate", "on" if args.deflate else "off"),
            ("descriptor limit", str(fd_limit)),
            (
                "steady phase",
                f"{len(posts)} panics at {args.rate:g}/s, pings every {args.ping_interval:g} s",
            ),
        ],
    )
    rows: list[tuple[str, str]] = []
    for phase in phases:
        rows.extend(connect_rows(phase))
    rows.append(
        (
            "server RSS",
            f"{mib(rss_start)} idle -> {mib(rss_connected)} with {connected} sockets"
            f" ({kib((rss_connected - rss_start) / connected) if connected else 'n/a'} per"
            f" socket) -> {mib(rss_end)} after the steady phase (max {mib(rss_max)})",
        )
    )
    print_table("Connections and memory", rows)

    ping_rate = d.pings_sent / ping_seconds if ping_seconds > 0 else math.nan
    rows = [
        *cpu_rows("pings only (% of one core)", *pings_only),
        *cpu_rows("pings + panics", *steady),
        *instance_rows(instances, ping_seconds, args.rate),
        (
            "load generator",
            f"client workers {worker_cpu[0]:.0f}% / {worker_cpu[1]:.0f}% of one core (pings"
            f" only / with panics) over {len(instances)} instance(s); panics sent at"
            f" {len(posts) / args.duration:.2f}/s (asked {args.rate:g}/s), pings at"
            f" {d.pings_sent / ping_seconds if ping_seconds > 0 else math.nan:.0f}/s (asked"
            f" {args.mdts / args.ping_interval:.0f}/s)",
        ),
        (
            "pings",
            f"{d.pings_sent} sent (~{ping_rate:.0f}/s), {d.ping_failures} on closed sockets;"
            f" {counts.pop('geo_index_units')} units in the GEO index,"
            f" {counts.pop('unit_track_rows')} track rows flushed",
        ),
        (
            "relay backlog (steady)",
            f"max {max(backlog, default=0)}, median {percentile(backlog, 50):.0f} events",
        ),
    ]
    # Marginal costs, from the two windows: the pings-only share over the ping rate,
    # and what the panics added over the panic rate. Rough on a shared machine, but
    # they say what one more MDT or one more incident per second would cost.
    server_idle = pings_only[0].by_role.get("server (python)", math.nan)
    server_busy = steady[0].by_role.get("server (python)", math.nan)
    if ping_rate > 0:
        rows.append(
            (
                "server CPU per ping",
                f"{server_idle / 100 / ping_rate * 1000:.2f} ms (pings, keepalives, flushes);"
                f" {(server_idle - idle_pct) / 100 / ping_rate * 1000:.2f} ms over the"
                f" {idle_pct:.1f}% the instances took connected but silent",
            )
        )
    if any(p.http_status == 202 for p in posts):
        rows.append(
            (
                "server CPU per incident",
                f"{(server_busy - server_idle) / 100 / args.rate * 1000:.0f} ms"
                f" (intake, MDT replies, and fan-out of its events to {connected} sockets)",
            )
        )
    print_table("CPU", rows)

    statuses = Counter(p.status or f"HTTP {p.http_status}" for p in posts)
    errors = [p.error for p in posts if p.error]
    rows = [
        ("panics (measured)", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))),
        ("warm-up panics", str(len(warm_posts))),
        (
            "POST -> 202 p50/p90/p99",
            latency_row([p.answered - p.sent for p in posts if p.http_status == 202]),
        ),
        ("POST -> console incident.created", latency_row(d.console_latencies)),
        (
            "  deliveries",
            f"{len(d.console_latencies)} of {d.console_expected}"
            f" ({d.connected['console']} consoles x {sum(p.incident_id is not None for p in posts)}"
            " incidents)",
        ),
        ("  first -> last console, per incident", latency_row(d.console_spread)),
        ("POST -> MDT assignment.offered", latency_row(d.mdt_latencies)),
        (
            "  offers",
            f"{len(d.mdt_latencies)} of {d.offered_at_intake} offered at intake delivered;"
            f" {d.offers_missing} missing; {d.late_offers} queued and offered later",
        ),
        ("MDT acks", ", ".join(f"{k}: {v}" for k, v in sorted(d.acks.items())) or "none"),
        ("MDT errors", ", ".join(f"{k}: {v}" for k, v in sorted(d.errors.items())) or "none"),
        (
            "closed by the server",
            ", ".join(f"code {k}: {v}" for k, v in sorted(d.closed.items())) or "none",
        ),
        ("events read", ", ".join(f"{k}: {v}" for k, v in sorted(d.events.items()))),
        ("incidents stored", ", ".join(f"{k[10:]}: {v}" for k, v in sorted(counts.items()))),
    ]
    if errors:
        rows.append(("first POST error", errors[0] or ""))
    print_table("Delivery (latency p50 / p90 / p99)", rows)
    for key, detail in d.error_samples.items():
        print(f"    {key}: {detail}")
    print_table(
        "Server log: warnings and errors",
        [(str(n), line) for line, n in log_lines.most_common(6)] or [("none", "")],
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fan-out benchmark: memory per websocket, CPU, and event delivery "
        "latency to consoles and MDTs, with thousands of MDTs pinging.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ERSS_BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL,
        help="PostgreSQL (a private schema is created and dropped); env ERSS_BENCH_DATABASE_URL",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("ERSS_BENCH_REDIS_URL") or DEFAULT_REDIS_URL,
        help="Redis (keys under a private prefix, deleted at the end); env ERSS_BENCH_REDIS_URL",
    )
    clients = parser.add_argument_group("clients")
    clients.add_argument("--mdts", type=int, default=10_000, help="MDT websockets (units)")
    clients.add_argument("--consoles", type=int, default=100, help="console websockets")
    clients.add_argument(
        "--instances",
        type=int,
        default=1,
        help="erss serve processes on one PostgreSQL schema and Redis prefix, each on its"
        " own port; clients are dealt round robin over them, panics too",
    )
    clients.add_argument(
        "--available-share",
        type=float,
        default=0.05,
        help="share of units on duty (available); the rest are off duty. Every intake "
        "reads and ranks all on-duty units of the agency",
    )
    clients.add_argument(
        "--workers", type=int, default=0, help=f"client processes (0: one per {CLIENTS_PER_WORKER})"
    )
    clients.add_argument(
        "--window", type=int, default=200, help="handshakes in flight at once, over all workers"
    )
    clients.add_argument(
        "--open-timeout",
        type=float,
        default=120.0,
        help="seconds for a handshake, and again for its snapshot; a worker gives up on "
        "its remaining clients after a whole window of failures in a row",
    )
    clients.add_argument(
        "--deflate",
        action="store_true",
        help="per-message deflate: ERSS_WS_PER_MESSAGE_DEFLATE=true and clients offer it",
    )
    clients.add_argument(
        "--no-source-ips",
        dest="source_ips",
        action="store_false",
        help="all workers dial from 127.0.0.1 (at most ~28,000 client ports in all)",
    )
    clients.add_argument(
        "--no-free-units",
        action="store_true",
        help="MDTs accept offers but never finish the job, so the on-duty fleet runs out",
    )
    load = parser.add_argument_group("load")
    load.add_argument(
        "--ping-interval", type=float, default=10.0, help="seconds between an MDT's pings"
    )
    load.add_argument(
        "--rate",
        type=float,
        default=2.0,
        help="panics per second in the steady phase (near what one process sustains with "
        "10,000 MDTs; 5/s overloads it, see docs/benchmarks.md)",
    )
    load.add_argument("--duration", type=float, default=60.0, help="seconds of steady phase")
    load.add_argument(
        "--idle-window",
        type=float,
        default=10.0,
        help="seconds of CPU measured connected but silent, and again with pings only",
    )
    load.add_argument(
        "--warmup-panics", type=int, default=5, help="unmeasured panics before the steady phase"
    )
    load.add_argument("--settle", type=float, default=5.0, help="seconds for the last deliveries")
    load.add_argument(
        "--settle-connect",
        type=float,
        default=3.0,
        help="seconds after connecting before the server RSS is read",
    )
    load.add_argument("--seed", type=int, default=112, help="seed for unit and panic places")
    parser.add_argument("--start-timeout", type=float, default=60.0, help="seconds to start")
    parser.add_argument(
        "--profile-server",
        metavar="FILE",
        help="run the server under cProfile and write its profile to FILE (slows it down)",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the server and worker logs (path printed)"
    )
    storm.add_arguments(parser)
    args = parser.parse_args(argv)
    for name in ("mdts", "consoles", "rate", "duration", "ping_interval", "window", "instances"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if not 0 < args.available_share <= 1:
        parser.error("--available-share must be in (0, 1]")
    storm.check_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run_loop(bench(parse_args(argv)))


if __name__ == "__main__":
    exit_with(main)

"""The clients of bench/fanout.py: the bench/fanout_worker.py processes that hold the MDT
and console websockets, how the clients are dealt over them, the connection phases,
and the open-loop panics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import websockets
from e2e import PostResult, panic_body, post_panic
from fanout_fleet import FleetUnit
from fanout_proc import cpu_seconds, rss_bytes

from geo.points import GeoPoint

WORKER = Path(__file__).resolve().parent / "fanout_worker.py"
# Clients per worker process when --workers is not given: enough that each worker's
# loop stays far from busy (10,100 clients -> 5 workers), few enough processes that
# their interpreters do not crowd two cores.
CLIENTS_PER_WORKER = 2500


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


def deal_clients(
    fleet: list[FleetUnit],
    console_tokens: dict[str, str],
    ws_urls: list[str],
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], list[int]]:
    """The workers' jobs, and the instance each worker talks to (a worker talks to one):
    clients dealt round robin over the instances, each instance's over its own workers."""
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
    return jobs, worker_instance


def worker_count(args: argparse.Namespace) -> int:
    """Client processes: ``--workers``, or one per CLIENTS_PER_WORKER clients."""
    if args.workers > 0:
        return args.workers
    return max(1, math.ceil((args.mdts + args.consoles) / CLIENTS_PER_WORKER))


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

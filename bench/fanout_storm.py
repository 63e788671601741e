"""Reconnect storm for bench/fanout.py (issue #15, item 3): ``--storm N``.

    .venv/bin/python bench/fanout.py --storm 1000 --duration 90 --storm-at 20
    .venv/bin/python bench/fanout.py --mdts 300 --consoles 10 --storm 50 --duration 15  # smoke
    # the claim of #15, three instances (one process holds under 19,000 sockets here):
    .venv/bin/python bench/fanout.py --instances 3 --mdts 25000 --consoles 1000
        --storm 1000 --duration 120 --storm-at 30 --open-timeout 120

The claim to check: "a reconnect storm of 1,000 consoles at 25,000 units keeps every
other socket's delivery p99 under a second". ``--storm-at`` seconds into the steady
phase (panics and pings flowing, the ``--consoles`` connected and measured), N more
city-wide console operators, written into the schema with the others, connect at once:
no handshake window; each authenticates with its own operator token like the measured
consoles and reads its snapshot (the expensive part for the server), then stays and
reads events, as a console that came back would. They run in worker processes of
their own (bench/fanout_worker.py, ``connect storm``), about 250 consoles each, so that
neither the measured clients' loops nor one storm process is what slows the storm down;
a storm console takes its snapshot undecoded, only its opening is read.

The storm window runs from the storm's start until every storm worker has answered (its
last console has read its snapshot or failed: at most twice ``--open-timeout``). The
report splits the steady phase's panics by when they were POSTed (before, during, after
the window) and gives for each POST -> ``incident.created`` on the measured consoles and
POST -> ``assignment.offered`` on the MDTs, deliveries made against expected; for the
storm, consoles connected, time to connect all, handshake + snapshot, the servers' CPU
and RSS, sockets the servers closed meanwhile, and the load generator's CPU during it.

The servers' websocket cap (``ERSS_WS_MAX_CONNECTIONS``, by default the descriptor limit
less 1,024, see dispatch/capacity.py) is counted against every socket an instance will
hold; a cap that would refuse some is raised for the run, and the report says so. The
server has no per-operator limit, but every storm console has an operator of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from e2e_common import fmt_ms, percentile, print_table
from e2e_cpu import CpuSample
from e2e_mdt import PostResult

from dispatch.auth import new_secret
from dispatch.capacity import RESERVED_FDS, limit_for

# Storm consoles per worker process when --storm-workers is not given: at 25,000 units a
# snapshot is about 7 MB, and one process reading 250 of them at once stays well under
# a core.
STORM_CLIENTS_PER_WORKER = 250
STORM_ROLE = "storm workers (python)"
MEASURED_ROLE = "client workers (python)"  # bench/fanout_proc.py's role for the other workers
BACKENDS_ROLE = "postgresql (server's backends)"
CAP_SETTING = "ERSS_WS_MAX_CONNECTIONS"
# What "keeps every other socket's delivery p99 under a second" asks of each window.
TARGET_P99_S = 1.0


# --------------------------------------------------------------------------- options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reconnect storm (docs/benchmarks.md, State scale)")
    group.add_argument(
        "--storm",
        type=int,
        default=0,
        metavar="N",
        help="N more city-wide consoles, each with its own operator, connect all at once "
        "during the steady phase (0: no storm)",
    )
    group.add_argument(
        "--storm-at",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds into the steady phase when the storm starts; None: a third of --duration",
    )
    group.add_argument(
        "--storm-workers",
        type=int,
        default=0,
        help=f"client processes for the storm (0: one per {STORM_CLIENTS_PER_WORKER} consoles,"
        " at least one per instance)",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.storm < 0:
        parser.error("--storm must be 0 or more")
    if args.storm_workers < 0:
        parser.error("--storm-workers must be 0 or more")
    if args.storm_at is None:
        args.storm_at = args.duration / 3
    if args.storm and not 0 <= args.storm_at < args.duration:
        parser.error("--storm-at must be within the steady phase: 0 <= SECONDS < --duration")


def operator_tokens(count: int) -> dict[str, str]:
    """The storm consoles' operators (city-wide, like the measured consoles')."""
    return {f"fan-storm-{n:04d}": new_secret() for n in range(count)}


# --------------------------------------------------------------------------- capacity


@dataclass(frozen=True)
class SocketCap:
    """The websocket cap each instance will have, and whether the run raised it."""

    needed: int  # websockets the busiest instance will hold, the storm's included
    default: int  # the cap the server would take from its descriptor limit
    raised_to: int | None  # ERSS_WS_MAX_CONNECTIONS set by this run, if it was
    given: int | None  # ERSS_WS_MAX_CONNECTIONS already in our environment, if it was
    fd_limit: int

    @property
    def cap(self) -> int:
        return self.raised_to or self.given or self.default

    def env(self) -> dict[str, str]:
        return {CAP_SETTING: str(self.raised_to)} if self.raised_to else {}

    def text(self) -> str:
        if self.given:
            head = f"{self.given} per instance ({CAP_SETTING} from the environment)"
        elif self.raised_to:
            head = (
                f"raised to {self.raised_to} per instance with {CAP_SETTING} (the default,"
                f" descriptor limit {self.fd_limit} less {RESERVED_FDS}, is {self.default})"
            )
        else:
            head = f"{self.default} per instance (descriptor limit {self.fd_limit}), not raised"
        tail = f"; the busiest instance holds up to {self.needed} websockets"
        if self.needed > self.cap:
            tail += ": SOME WILL BE REFUSED (1013)"
        return head + tail


def socket_cap(args: argparse.Namespace, fd_limit: int, spare_fds: int) -> SocketCap:
    """Raise the servers' websocket cap when the storm would pass it, up to what their
    descriptors allow (``spare_fds`` kept for the pool, Redis and logs)."""

    instances: int = args.instances

    def share(total: int) -> int:
        return math.ceil(total / instances)

    needed = share(args.mdts) + share(args.consoles) + share(args.storm)
    default = limit_for(fd_limit)
    given = int(os.environ[CAP_SETTING]) if os.environ.get(CAP_SETTING) else None
    raised = None
    if given is None and needed > default:
        raised = max(default, min(needed, fd_limit - spare_fds))
    cap = SocketCap(needed, default, raised, given, fd_limit)
    if needed > cap.cap:
        print(f"warning: websocket cap {cap.text()}", file=sys.stderr)
    return cap


# --------------------------------------------------------------------------- workers


def worker_jobs(
    tokens: dict[str, str], ws_urls: list[str], args: argparse.Namespace, first: int
) -> list[tuple[int, dict[str, Any]]]:
    """(instance, job) of each storm worker: the storm consoles dealt round robin over
    the instances like the measured ones, each instance's over its own storm workers,
    every worker opening all of its consoles at once."""
    instances = len(ws_urls)
    count = args.storm_workers or math.ceil(args.storm / STORM_CLIENTS_PER_WORKER)
    count = max(count, instances)
    names = sorted(tokens)
    shares: list[list[str]] = [[] for _ in range(count)]
    for instance in range(instances):
        mine = range(instance, count, instances)  # this instance's storm workers
        for n, name in enumerate(names[instance::instances]):
            shares[mine[n % len(mine)]].append(name)
    jobs: list[tuple[int, dict[str, Any]]] = []
    for i, share in enumerate(shares):
        instance = i % instances
        clients = [{"kind": "storm", "name": name, "token": tokens[name]} for name in share]
        index = first + i
        job = {
            "ws_url": ws_urls[instance],
            "clients": clients,
            "window": max(1, len(clients)),  # all at once
            "deflate": args.deflate,
            "source_ip": f"127.0.0.{10 + index}" if args.source_ips else None,
            "ping_interval_s": args.ping_interval,
            "open_timeout_s": args.open_timeout,
            "free_units": not args.no_free_units,
            "seed": args.seed * 1000 + index,
        }
        jobs.append((instance, job))
    return jobs


class Worker(Protocol):
    """What the storm needs of bench/fanout_clients.py's WorkerProcess."""

    @property
    def pid(self) -> int: ...

    def command(self, line: str) -> Awaitable[dict[str, Any]]: ...


class Meter(Protocol):
    """bench/fanout_proc.py's FanoutCpuMeter."""

    top_others: list[tuple[str, float]]

    def start(self) -> None: ...

    def stop(self) -> CpuSample: ...


# --------------------------------------------------------------------------- the storm


@dataclass
class StormRun:
    """What the storm did and cost; times are ``time.perf_counter()``."""

    wanted: int
    started: float
    ended: float
    ok: int
    failures: Counter[str]
    handshakes: list[float]
    server_cpu_s: float
    baseline_pct: float  # the servers' CPU, % of one core, in the steady phase before it
    rss_before: int
    rss_after: int
    cpu: CpuSample
    others: list[tuple[str, float]]

    @property
    def seconds(self) -> float:
        return self.ended - self.started


async def run_storm(
    workers: Sequence[Worker],
    wanted: int,
    at_s: float,
    *,
    server_cpu: Callable[[], float],
    server_rss: Callable[[], int],
    meter: Meter,
) -> StormRun:
    """Wait ``at_s`` (the servers' CPU meanwhile is the baseline), then have every storm
    worker open all of its consoles at once; returns when all have answered."""
    cpu0, t0 = server_cpu(), time.perf_counter()
    await asyncio.sleep(at_s)
    print(f"storm: {wanted} consoles connecting at once", file=sys.stderr)
    rss_before = server_rss()
    cpu1 = server_cpu()
    meter.start()
    started = time.perf_counter()
    answers = await asyncio.gather(*(w.command("connect storm") for w in workers))
    ended = time.perf_counter()
    cpu2 = server_cpu()
    sample = meter.stop()
    failures: Counter[str] = Counter()
    handshakes: list[float] = []
    for answer in answers:
        failures.update(answer["failures"])
        handshakes.extend(answer["handshake_s"])
    run = StormRun(
        wanted=wanted,
        started=started,
        ended=ended,
        ok=sum(a["ok"] for a in answers),
        failures=failures,
        handshakes=handshakes,
        server_cpu_s=cpu2 - cpu1,
        baseline_pct=(cpu1 - cpu0) / (started - t0) * 100 if at_s > 0 else math.nan,
        rss_before=rss_before,
        rss_after=server_rss(),
        cpu=sample,
        others=meter.top_others,
    )
    print(f"  storm: {run.ok} of {wanted} consoles in {run.seconds:.1f} s", file=sys.stderr)
    return run


# --------------------------------------------------------------------------- report


class DeliveriesLike(Protocol):
    """The fields of bench/fanout_report.py's Deliveries that the storm report reads."""

    console_latencies: list[float]
    console_expected: int
    mdt_latencies: list[float]
    offered_at_intake: int
    offers_missing: int


Join = Callable[[list[dict[str, Any]], list[PostResult]], DeliveriesLike]


def split_posts(posts: Sequence[PostResult], run: StormRun) -> dict[str, list[PostResult]]:
    """The steady phase's panics by when they were POSTed: before, during, after."""
    windows: dict[str, list[PostResult]] = {"before": [], "during": [], "after": []}
    for post in posts:
        if post.sent < run.started:
            windows["before"].append(post)
        elif post.sent <= run.ended:
            windows["during"].append(post)
        else:
            windows["after"].append(post)
    return windows


def p50_p99(values: list[float]) -> str:
    if not values:
        return "n/a (no samples)"
    return (
        f"{fmt_ms(percentile(values, 50))} / {fmt_ms(percentile(values, 99))}"
        f"  (max {fmt_ms(max(values))}, n={len(values)})"
    )


def window_rows(label: str, posts: list[PostResult], d: DeliveriesLike) -> list[tuple[str, str]]:
    incidents = sum(p.incident_id is not None for p in posts)
    return [
        (f"{label}: panics", f"{len(posts)} POSTed, {incidents} incidents"),
        ("  POST -> console incident.created", p50_p99(d.console_latencies)),
        ("    deliveries", f"{len(d.console_latencies)} of {d.console_expected}"),
        ("  POST -> MDT assignment.offered", p50_p99(d.mdt_latencies)),
        (
            "    offers",
            f"{len(d.mdt_latencies)} of {d.offered_at_intake} offered at intake delivered;"
            f" {d.offers_missing} missing",
        ),
    ]


def verdict(d: DeliveriesLike) -> str:
    """Did the measured sockets keep their p99 under a second through the storm?"""
    if not d.console_latencies and not d.mdt_latencies:
        return "n/a: no panic was POSTed during the storm (lower --storm-at or raise --rate)"
    p99s = [percentile(v, 99) for v in (d.console_latencies, d.mdt_latencies) if v]
    made = len(d.console_latencies) == d.console_expected and d.offers_missing == 0
    ok = max(p99s) < TARGET_P99_S and made
    return (
        f"{'yes' if ok else 'NO'}: worst p99 {fmt_ms(max(p99s))}"
        f"{'' if made else ', and some deliveries were not made'}"
        f" (target under {TARGET_P99_S:g} s, every delivery made)"
    )


def closes_during(results: list[dict[str, Any]], run: StormRun) -> Counter[str]:
    """Measured sockets the servers closed inside the storm window, by kind and code."""
    found: Counter[str] = Counter()
    for result in results:
        for kind, code, when in result["closed_at"]:
            if run.started <= when <= run.ended:
                found[f"{kind} {code}"] += 1
    return found


def load_generator_text(run: StormRun) -> str:
    roles = run.cpu.by_role
    named = "; ".join(f"{name} {pct:.0f}%" for name, pct in run.others if pct >= 1)
    return (
        f"storm workers {roles.get(STORM_ROLE, math.nan):.0f}%, measured clients' workers"
        f" {roles.get(MEASURED_ROLE, math.nan):.0f}%, bench {roles.get('bench (python)', 0):.0f}%"
        f" (of one core); machine busy {run.cpu.machine_busy_pct:.0f}% of {os.cpu_count()}00%"
        + (f"; biggest others: {named}" if named else "")
    )


def report(
    args: argparse.Namespace,
    run: StormRun,
    cap: SocketCap,
    posts: list[PostResult],
    results: list[dict[str, Any]],
    storm_results: list[dict[str, Any]],
    join: Join,
    mib: Callable[[float], str],
) -> None:
    """The storm's own table, then the steady phase's deliveries split by its window."""
    rate = run.ok / run.seconds if run.seconds > 0 else math.nan
    failed = run.wanted - run.ok
    server_pct = run.server_cpu_s / run.seconds * 100 if run.seconds > 0 else math.nan
    extra_s = run.server_cpu_s - run.baseline_pct / 100 * run.seconds
    storm_closed: Counter[str] = Counter()
    storm_events: Counter[str] = Counter()
    for result in storm_results:
        storm_closed.update(result["closed"])
        storm_events.update(result["events"])
    during_closes = closes_during(results, run)
    roles = run.cpu.by_role
    rows = [
        (
            "storm",
            f"{args.storm} consoles (own operators, city-wide), {len(storm_results)} worker"
            f" processes, all at once {args.storm_at:g} s into the steady phase",
        ),
        ("websocket cap", cap.text()),
        (
            "storm consoles connected",
            f"{run.ok} of {run.wanted} in {run.seconds:.1f} s ({rate:.0f}/s)"
            + (f"; failed {failed}: {dict(run.failures)}" if failed else ""),
        ),
        ("  handshake + snapshot p50 / p99", p50_p99(run.handshakes)),
        (
            "  server CPU during the storm",
            f"{run.server_cpu_s:.1f} s ({server_pct:.0f}% of one core, all instances; before"
            f" it {run.baseline_pct:.0f}% with pings and panics): {extra_s:.1f} s over that,"
            + (f" {extra_s / run.ok * 1000:.1f} ms per storm console" if run.ok else " n/a"),
        ),
        ("  server RSS", f"{mib(run.rss_before)} -> {mib(run.rss_after)}"),
        (
            "  CPU by role during the storm",
            f"server {roles.get('server (python)', math.nan):.0f}%, PostgreSQL (server's)"
            f" {roles.get(BACKENDS_ROLE, 0):.0f}%, Redis"
            f" {roles.get('redis (shared)', 0):.0f}%, softirq"
            f" {roles.get('kernel softirq', 0):.0f}%",
        ),
        ("  load generator during the storm", load_generator_text(run)),
        (
            "  measured sockets closed in the window",
            ", ".join(f"{k}: {v}" for k, v in sorted(during_closes.items())) or "none",
        ),
        (
            "storm consoles afterwards",
            "closed by the server: "
            + (", ".join(f"code {k}: {v}" for k, v in sorted(storm_closed.items())) or "none")
            + "; events read: "
            + (", ".join(f"{k}: {v}" for k, v in sorted(storm_events.items())) or "none"),
        ),
    ]
    print_table("Reconnect storm", rows)

    windows = split_posts(posts, run)
    figures = {label: join(results, chosen) for label, chosen in windows.items()}
    rows = [
        (
            "storm window",
            f"{run.seconds:.1f} s from the storm's start until its last console read its"
            " snapshot (or gave up)",
        ),
        ("measured sockets' p99 under 1 s during it", verdict(figures["during"])),
    ]
    for label, chosen in windows.items():
        rows.extend(window_rows(label, chosen, figures[label]))
    if not windows["after"]:
        rows.append(
            ("note", "no panic after the storm: it outlasted the steady phase (raise --duration)")
        )
    print_table("Delivery around the storm (latency p50 / p99, by POST time)", rows)
    print(
        "  (the steady phase's CPU and per-incident figures above include the storm; the"
        " windows after it have the storm consoles connected too)"
    )

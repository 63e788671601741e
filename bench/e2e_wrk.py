"""The queued-path mode: wrk replays pre-signed, all-distinct panic deliveries
(bench/panic.lua) against the server and against bench/floor_app.py."""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e_common import (
    BENCH_DIR,
    PANIC_PATH,
    ServerProcess,
    child_env,
    fmt_ms,
    free_port,
    machine_line,
    panic_body,
    percentile,
    ratio,
    sample_points,
)
from e2e_cpu import CpuMeter, CpuSample, cpu_text
from e2e_full import fmt, generator_line, run_generator
from e2e_trees import Tree, TreeServer, start_tree_server

from gateways.signing import sign

PANIC_LUA = BENCH_DIR / "panic.lua"
FLOOR_APP = BENCH_DIR / "floor_app.py"


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


# --------------------------------------------------------------------------- the mode


async def wrk_mode(
    args: argparse.Namespace, trees: list[Tree], ctx: dict[str, Any], servers: list[TreeServer]
) -> None:
    tag: str = ctx["tag"]
    workdir: Path = ctx["workdir"]
    started = [
        await start_tree_server(tree, "wrk", extra_per_zone=0, **ctx, servers=servers)
        for tree in trees
    ]
    floor_storage = started[0].storage
    floor_port = free_port()
    floor_url = f"http://127.0.0.1:{floor_port}"
    floor = ServerProcess(
        "floor",
        [sys.executable, str(FLOOR_APP), "--port", str(floor_port)],
        child_env(
            {
                "FLOOR_DATABASE_URL": floor_storage.database_url,
                "FLOOR_REDIS_URL": floor_storage.redis_url,
                "FLOOR_DB_SCHEMA": f"{floor_storage.schema}_floor",
                "FLOOR_REDIS_KEY": floor_storage.floor_key,
            }
        ),
        workdir / "floor.log",
    )
    floor_storage.floor_schema = f"{floor_storage.schema}_floor"
    ctx["floor"] = floor
    floor.start()
    await floor.wait_healthy(floor_url, args.start_timeout)
    secret = started[0].secret
    # The generator of the full-path mode against the floor, at the top rate and twice it:
    # if it keeps its rate here with CPU to spare, it does not set the pace there.
    for rate in (max(args.rates), 2 * max(args.rates)):
        generated = await run_generator(
            floor_url, secret, rate, args.gen_check_s, f"{tag}-gen{rate:g}", workdir / "gen.json"
        )
        print(f"  load generator against the floor: {generator_line(generated)}")
    for ts in started:
        await wrk_warmup(
            ts.base_url, ts.server.pid, ts.secret, args, workdir, f"{tag}-{ts.tree.ident}"
        )
    await wrk_warmup(floor_url, floor.pid, secret, args, workdir, f"{tag}-floor")
    print(
        f"\nQueued path: wrk -t{args.threads} -c{args.connections} -d{args.duration}s, rounds"
        f" alternate {', '.join(t.name for t in trees)} (each first in turn), floor;"
        f" {machine_line()} at start"
    )
    header = f"  {'round':<6}" + "".join(f" {t.name + ' 2xx/s':>16} {'stmts':>6}" for t in trees)
    print(header + f" {'floor 2xx/s':>12} " + " ".join(f"{t.name + '/floor':>14}" for t in trees))
    results: dict[str, list[WrkResult]] = {t.name: [] for t in trees}
    stmts: dict[str, list[float]] = {t.name: [] for t in trees}
    floors: list[WrkResult] = []
    for rnd in range(args.rounds):
        line = f"  {rnd + 1:<6}"
        for ts in rotated(started, rnd):
            before = await ts.counts()
            run = await wrk_measure(
                ts.tree.name, ts.base_url, ts.server.pid, ts.secret, args, workdir,
                f"{tag}-{ts.tree.ident}-{rnd}",
            )  # fmt: skip
            after = await ts.counts()
            results[ts.tree.name].append(run)
            stmts[ts.tree.name].append(math_per(before, after, run))
        for tree in trees:
            line += f" {results[tree.name][-1].ok_rps:>16.0f} {fmt(stmts[tree.name][-1]):>6}"
        f_run = await wrk_measure(
            "floor", floor_url, floor.pid, secret, args, workdir, f"{tag}-f{rnd}"
        )
        floors.append(f_run)
        line += f" {f_run.ok_rps:>12.0f} " + " ".join(
            f"{ratio(results[t.name][-1].ok_rps, f_run.ok_rps):>14.2f}" for t in trees
        )
        print(line, flush=True)
    floor_med = percentile([r.ok_rps for r in floors], 50)
    print(f"  ({machine_line()} at the end)")
    for tree in trees:
        ours = percentile([r.ok_rps for r in results[tree.name]], 50)
        ratios = [
            ratio(o.ok_rps, f.ok_rps) for o, f in zip(results[tree.name], floors, strict=True)
        ]
        print(
            f"  {tree.name}: median {ours:.0f} 2xx/s, floor {floor_med:.0f}:"
            f" {ratio(ours, floor_med):.2f} (rounds {min(ratios):.2f} to {max(ratios):.2f});"
            f" {fmt(percentile(stmts[tree.name], 50))} statements per 2xx (median round)"
        )
    for ts in started:
        await ts.stop()
    floor.stop()


def rotated(items: list[TreeServer], turn: int) -> list[TreeServer]:
    """The trees in the order of this round: each goes first in turn, so that none is
    always the one measured right after the floor (or after the same other tree)."""
    k = turn % len(items)
    return items[k:] + items[:k]


def math_per(before: dict[str, Any] | None, after: dict[str, Any] | None, run: WrkResult) -> float:
    """Statements the server sent per 2xx answer during one wrk run."""
    if before is None or after is None:
        return float("nan")
    total = sum(m.get("statements", 0) for m in after["counts"].values()) - sum(
        m.get("statements", 0) for m in before["counts"].values()
    )
    ok = sum(n for code, n in run.statuses.items() if 200 <= code < 300)
    return total / ok if ok else float("nan")

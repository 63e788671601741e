"""End-to-end benchmark of the dispatch path, one or more source trees side by side.

    .venv/bin/python bench/e2e.py                                 # this tree, both modes
    .venv/bin/python bench/e2e.py --tree before=/tmp/wt-before --tree after=/work/main

All on loopback, in private PostgreSQL schemas and Redis key prefixes removed at the end.
Each tree's server runs from that tree (bench/e2e_trees.py) with a statement counter
wrapped around it from outside (bench/e2e_serve.py). Two modes (``--mode``):

full  The full path. A fleet of MDTs on real websockets (bench/e2e_fleet.py, its own
      process) accepts every offer and finishes the job at once (accept, on_scene,
      available), and an operator closes each incident over REST. A load generator (its
      own process, bench/e2e_load.py) posts signed panics open loop at each of
      ``--rates``. Per step: offered incidents/s, POST -> MDT offer p50/p99, statements
      and round trips per offered panic, CPU by process, the generator's CPU and achieved
      send rate. Steps interleave trees at each rate, rates go up, rounds repeat.
wrk   The queued path: wrk -t2 -c32 replays pre-signed, all-distinct deliveries
      (bench/panic.lua) against each tree's server and bench/floor_app.py (one INSERT and
      one XADD) in alternating rounds; no MDT is connected, so after the first few panics
      every one is queued. Prints each tree's 2xx/s as a fraction of the floor's.

Needs ``wrk`` on PATH (Debian: ``apt-get install wrk``) for the wrk mode.
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Re-exported for bench/chaos.py and bench/fanout.py, which import them from here.
from e2e_common import (
    BENCH_DIR,
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    PANIC_PATH,
    ServerProcess,
    Storage,
    child_env,
    erss_command,
    exit_with,
    fmt_ms,
    free_port,
    keep_only_logs,
    machine_line,
    panic_body,
    percentile,
    print_table,
    run_loop,
    sample_backlog,
    sample_points,
    signed_headers,
)
from e2e_cpu import CpuMeter, CpuSample, _proc_cpu_ticks
from e2e_full import (
    STEP_HEADER,
    Step,
    full_step,
    print_full_summary,
    print_step_detail,
    step_line,
    step_statements,
)
from e2e_mdt import MdtBot, MdtLog, PostResult, post_panic
from e2e_trees import Tree, TreeServer, parse_tree, start_tree_server
from e2e_wrk import rotated, wrk_mode

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_REDIS_URL",
    "PANIC_PATH",
    "CpuMeter",
    "CpuSample",
    "MdtBot",
    "MdtLog",
    "PostResult",
    "ServerProcess",
    "Storage",
    "_proc_cpu_ticks",
    "child_env",
    "erss_command",
    "exit_with",
    "fmt_ms",
    "free_port",
    "keep_only_logs",
    "panic_body",
    "percentile",
    "post_panic",
    "print_table",
    "run_loop",
    "sample_backlog",
    "sample_points",
    "signed_headers",
]

FLOOR_APP = BENCH_DIR / "floor_app.py"
# A step whose offered incidents/s fall below this share of its rate is saturated.
SATURATED = 0.9


# --------------------------------------------------------------------------- full path


async def full_mode(
    args: argparse.Namespace, trees: list[Tree], ctx: dict[str, Any], servers: list[TreeServer]
) -> None:
    started = []
    for tree in trees:
        ts = await start_tree_server(
            tree, "full", extra_per_zone=args.extra_units_per_zone, **ctx, servers=servers
        )
        units = await ts.start_fleet(close=not args.no_close, timeout_s=args.start_timeout)
        print(f"  {tree.name}: {units} MDTs connected", file=sys.stderr)
        started.append(ts)
        if args.warmup > 0:
            # Fill the pool and each connection's statement and type caches first: a
            # fresh server's first panics pay asyncpg's type introspection.
            await full_step(
                ts, args.rates[0], args.warmup, f"{ctx['tag']}-{tree.ident}-warm",
                ctx["workdir"], args.settle,
            )  # fmt: skip
    steps: list[Step] = []
    print(f"\nFull path, {args.step_s:g} s per step, {machine_line()} at start")
    print(STEP_HEADER)
    for rnd in range(args.full_rounds):
        for rate in args.rates:
            saturated = 0
            for ts in rotated(started, rnd):
                tag = f"{ctx['tag']}-{ts.tree.ident}-r{rnd}-{rate:g}"
                step = await full_step(ts, rate, args.step_s, tag, ctx["workdir"], args.settle)
                steps.append(step)
                if args.statements_out is not None:
                    with args.statements_out.open("a") as out:
                        out.write(json.dumps(step_statements(step)) + "\n")
                saturated += step.sustained < SATURATED * rate
                print(step_line(step), flush=True)
                if args.verbose:
                    print_step_detail(step)
            if saturated == len(started) and rate != args.rates[-1]:
                # Higher rates would only grow the backlog (and the time the box is held).
                print(
                    f"  round {rnd + 1}: every tree saturated at {rate:g}/s; higher rates skipped"
                )
                break
    print(f"  ({machine_line()} at the end)")
    print(
        "  columns: target rate; achieved send rate; offered incidents/s (first POST to last"
        " offer); offered of sent; POST -> MDT offer p50/p99; statements and round trips per"
        " offered panic; CPU in % of one core: server, its PostgreSQL backends, load"
        " generator (own count), MDT fleet, whole machine (of 200%)"
    )
    print_full_summary(steps, [t.name for t in trees], args.rates)
    for ts in started:
        await ts.stop()


# --------------------------------------------------------------------------- main


async def bench(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM cancels the run like Ctrl-C does, so every cleanup below still happens.
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    tag = secrets.token_hex(4)
    workdir = Path(tempfile.mkdtemp(prefix="erss-bench-"))
    trees = args.tree or [Tree("this", BENCH_DIR.parent)]
    servers: list[TreeServer] = []
    embedded: Any = None
    database_url, redis_url = args.database_url, args.redis_url
    if args.embedded:
        from dispatch.embedded import start_embedded

        embedded = start_embedded(workdir / "services", database=True, redis=True)
        database_url, redis_url = embedded.database_url, embedded.redis_url
    ctx: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "tag": tag,
        "workdir": workdir,
        "count": not args.no_count,
        "start_timeout": args.start_timeout,
    }
    keep_logs = False
    print(
        f"bench {tag}: {machine_line()}; trees: " + ", ".join(f"{t.name}={t.path}" for t in trees)
    )
    try:
        if args.mode in ("full", "both"):
            await full_mode(args, trees, dict(ctx), servers)
        if args.mode in ("wrk", "both"):
            wrk_ctx = dict(ctx)
            try:
                await wrk_mode(args, trees, wrk_ctx, servers)
            finally:
                if "floor" in wrk_ctx:
                    wrk_ctx["floor"].stop()
        return 0
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("\ninterrupted; stopping everything", file=sys.stderr)
        raise
    except BaseException:
        keep_logs = True
        for ts in servers:
            print(
                f"\n--- last lines of {ts.server.name} ({ts.server.log_path}) ---", file=sys.stderr
            )
            print(ts.server.tail(), file=sys.stderr)
        raise
    finally:
        for ts in servers:
            await ts.stop()
        for ts in servers:
            await ts.storage.drop()
        if embedded is not None:
            embedded.stop()
        if keep_logs:
            keep_only_logs(workdir)
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="End-to-end benchmark: full path (MDTs, open-loop rates) and queued "
        "path (wrk against a floor), one or more source trees side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ERSS_BENCH_DATABASE_URL")
        or os.environ.get("ERSS_TEST_DATABASE_URL")
        or DEFAULT_DATABASE_URL,
        help="PostgreSQL to use (private schemas are created and dropped)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("ERSS_BENCH_REDIS_URL")
        or os.environ.get("ERSS_TEST_REDIS_URL")
        or DEFAULT_REDIS_URL,
        help="Redis to use (keys under private prefixes, deleted at the end)",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="start the project's embedded PostgreSQL and Redis instead of using the URLs",
    )
    parser.add_argument(
        "--tree",
        action="append",
        type=parse_tree,
        help="name=path of a source tree to run the server from; repeat to compare "
        "(default: this tree)",
    )
    parser.add_argument("--mode", choices=("full", "wrk", "both"), default="both")
    parser.add_argument(
        "--no-count", action="store_true", help="do not count the server's statements"
    )
    parser.add_argument("--start-timeout", type=float, default=90.0, help="seconds to start")
    full = parser.add_argument_group("full path")
    full.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[10.0, 25.0, 50.0, 100.0, 200.0, 250.0],
        help="panics per second, one step each, in this order",
    )
    full.add_argument("--step-s", type=float, default=8.0, help="seconds of sending per step")
    full.add_argument("--full-rounds", type=int, default=2, help="rounds over all rates")
    full.add_argument(
        "--settle", type=float, default=15.0, help="most seconds to wait for a step's offers"
    )
    full.add_argument(
        "--extra-units-per-zone",
        type=int,
        default=8,
        help="police units added per demo zone (17 zones; the demo has 2 police each)",
    )
    full.add_argument(
        "--no-close", action="store_true", help="leave finished incidents open (no REST close)"
    )
    full.add_argument(
        "--gen-check-s",
        type=float,
        default=4.0,
        help="seconds of the generator's self-check against the floor (wrk mode)",
    )
    full.add_argument(
        "--statements-out",
        type=Path,
        help="append every step's statement counts by origin and text to this file "
        "(JSON lines), to see which statements a change saves",
    )
    full.add_argument("-v", "--verbose", action="store_true", help="details of every step")
    wrk = parser.add_argument_group("queued path (wrk)")
    wrk.add_argument("-t", "--threads", type=int, default=2, help="wrk threads")
    wrk.add_argument("-c", "--connections", type=int, default=32, help="wrk connections")
    wrk.add_argument("-d", "--duration", type=int, default=8, help="seconds per measured run")
    wrk.add_argument("-r", "--rounds", type=int, default=3, help="measured runs of each")
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="seconds of warm-up per server (wrk; full path: at the first rate), not reported",
    )
    wrk.add_argument(
        "--wrk-requests-per-s",
        type=int,
        default=5000,
        help="distinct pre-signed requests per second of run; beyond them wrk replays keys",
    )
    args = parser.parse_args(argv)
    for name in ("rounds", "duration", "threads", "connections", "full_rounds", "step_s"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if any(r <= 0 for r in args.rates):
        parser.error("--rates must be positive")
    if args.connections < args.threads:
        parser.error("wrk needs at least one connection per thread")
    if args.tree and len({t.name for t in args.tree}) != len(args.tree):
        parser.error("--tree names must differ")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode != "full" and shutil.which("wrk") is None:
        print("bench: wrk is not on PATH (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    return run_loop(bench(args))


if __name__ == "__main__":
    exit_with(main)

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
import json
import math
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fanout_storm as storm

# bench/ is not a package: run as a script, this file's folder is on sys.path, so the
# end-to-end benchmark's helpers (server process, storage, CPU accounting, signed
# panics) and this benchmark's own modules are imported from it.
from e2e import (
    ServerProcess,
    Storage,
    exit_with,
    free_port,
    keep_only_logs,
    run_loop,
    sample_backlog,
)
from fanout_args import parse_args
from fanout_clients import (
    WorkerProcess,
    connect_phase,
    deal_clients,
    fire_panics,
    warm_up_sockets,
)
from fanout_fleet import incident_points, make_fleet, prepare_schema, retire_demo_units
from fanout_proc import FanoutCpuMeter, cpu_seconds, rss_bytes
from fanout_report import InstanceFigures, join_results, mib, report, server_log_summary
from fanout_servers import SERVER_SPARE_FDS, raise_fd_limit, server_counts, start_servers

from dispatch.auth import new_secret


async def bench(args: argparse.Namespace) -> int:
    """One run: prepare, start, connect, measure, report; everything is removed after."""
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
        await start_servers(args, storage, workdir, cap, ports, servers)
        credentials = json.loads((workdir / "data-0" / "demo-credentials.json").read_text())
        secret: str = credentials["gateways"]["panic"]
        await retire_demo_units(
            base_urls[0], credentials["operators"]["dispatcher"], sorted(credentials["units"])
        )

        jobs, worker_instance = deal_clients(fleet, console_tokens, ws_urls, args)
        n_workers = len(jobs)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark with this command line; the exit status."""
    return run_loop(bench(parse_args(argv)))


if __name__ == "__main__":
    exit_with(main)

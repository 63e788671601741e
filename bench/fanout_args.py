"""bench/fanout.py's command line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import fanout_storm as storm
from e2e import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL
from fanout_clients import CLIENTS_PER_WORKER


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked; exits with a usage message when it is wrong."""
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

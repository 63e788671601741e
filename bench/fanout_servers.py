"""The servers under test in bench/fanout.py: ``erss serve --demo`` instances on one
schema and Redis prefix, the descriptor limit they inherit, and what they stored."""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import redis.asyncio as aioredis
from e2e import ServerProcess, Storage, child_env, erss_command
from fanout_storm import SocketCap

from dispatch.keys import RedisKeys

# Descriptors the server needs besides client sockets: listening socket, pool, Redis,
# log, the interpreter's own files.
SERVER_SPARE_FDS = 100


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


async def start_servers(
    args: argparse.Namespace,
    storage: Storage,
    workdir: Path,
    cap: SocketCap | None,
    ports: list[int],
    servers: list[ServerProcess],
) -> None:
    """Start one instance on each port, each healthy before the next starts. Each is
    appended to ``servers`` as soon as it exists, so that the caller stops it even when
    a later one fails to start."""
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
        await server.wait_healthy(f"http://127.0.0.1:{port}", args.start_timeout)


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

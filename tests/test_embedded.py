"""The private PostgreSQL and Redis servers: real servers, real processes, no mocks."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis
import redis.asyncio as aioredis

from dispatch.embedded import EmbeddedError, EmbeddedServices, start_embedded

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_root(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder the servers can use; outside pytest's own temp root when run as root.

    As root, PostgreSQL runs as the system user 'pgserver', which pgserver lets traverse every
    parent of the data folder (chmod o+rx). Every pytest start resets /tmp/pytest-of-root to
    0700, so another pytest run starting meanwhile locks that user out of its own data.
    """
    if os.geteuid() != 0:
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="erss-embedded-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _gone(pid: int) -> bool:
    # The daemonised servers are re-parented to pid 1, which in some containers never reaps
    # them: an exited server can linger as a zombie, which holds nothing but its pid.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _postgres_pid(url: str) -> int:
    """Pid of the postmaster behind url: the parent of our backend."""
    conn = await asyncpg.connect(url)
    try:
        # Asked while connected: the backend exits with the connection.
        postmaster = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()")).ppid()
    finally:
        await conn.close()
    assert psutil.Process(postmaster).name() == "postgres"
    return int(postmaster)


async def _redis_pid(url: str) -> int:
    async with aioredis.from_url(url) as client:
        info = await client.info("server")
    return int(info["process_id"])


async def test_servers_answer_and_stop(data_root: Path) -> None:
    # Too deep for a Unix socket next to the data: pgserver must put its socket elsewhere.
    data_dir = data_root / ("a-rather-long-folder-name-" * 4)
    assert len(os.fsencode(data_dir / "postgres" / ".s.PGSQL.5432")) > 107

    services = start_embedded(data_dir)
    try:
        assert services.database_url.startswith("postgresql://")
        assert services.redis_url.startswith("unix://")

        conn = await asyncpg.connect(services.database_url)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
        async with aioredis.from_url(services.redis_url) as client:
            assert await client.ping()
            assert await client.set("erss:test", "up")
            assert await client.get("erss:test") == b"up"

        pg_pid = await _postgres_pid(services.database_url)
        redis_pid = await _redis_pid(services.redis_url)
        assert (data_dir / "postgres" / "PG_VERSION").exists()
        assert (data_dir / "redis").is_dir()
    finally:
        services.stop()

    assert _gone(pg_pid)
    assert _gone(redis_pid)
    assert not (data_dir / "postgres" / "postmaster.pid").exists()


async def test_data_survives_a_restart(data_root: Path) -> None:
    data_dir = data_root / "data"

    first = start_embedded(data_dir)
    try:
        conn = await asyncpg.connect(first.database_url)
        try:
            await conn.execute("CREATE TABLE call (id int PRIMARY KEY, caller text)")
            await conn.execute("INSERT INTO call VALUES (1, 'kept')")
        finally:
            await conn.close()
        async with aioredis.from_url(first.redis_url) as client:
            await client.set("erss:kept", "yes")
        pids = [await _postgres_pid(first.database_url), await _redis_pid(first.redis_url)]
    finally:
        first.stop()
    assert all(_gone(pid) for pid in pids)

    second = start_embedded(data_dir)
    try:
        conn = await asyncpg.connect(second.database_url)
        try:
            assert await conn.fetchval("SELECT caller FROM call WHERE id = 1") == "kept"
        finally:
            await conn.close()
        async with aioredis.from_url(second.redis_url) as client:
            assert await client.get("erss:kept") == b"yes"
        pids = [await _postgres_pid(second.database_url), await _redis_pid(second.redis_url)]
    finally:
        second.stop()
    assert all(_gone(pid) for pid in pids)


async def test_stop_twice_is_harmless(data_root: Path) -> None:
    only_postgres = start_embedded(data_root / "pg", redis=False)
    assert only_postgres.redis_url == ""
    pg_pid = await _postgres_pid(only_postgres.database_url)
    only_postgres.stop()
    only_postgres.stop()
    assert _gone(pg_pid)

    only_redis = start_embedded(data_root / "redis", database=False)
    assert only_redis.database_url == ""
    assert not (data_root / "redis" / "postgres").exists()
    redis_pid = await _redis_pid(only_redis.redis_url)
    only_redis.stop()
    only_redis.stop()
    assert _gone(redis_pid)


async def test_second_start_reuses_and_leaves_the_servers_to_the_first(data_root: Path) -> None:
    first = start_embedded(data_root)
    try:
        second = start_embedded(data_root)
        assert (second.database_url, second.redis_url) == (first.database_url, first.redis_url)
        pids = [await _postgres_pid(first.database_url), await _redis_pid(first.redis_url)]
        second.stop()
        # Still served: the servers belong to `first`.
        assert [await _postgres_pid(first.database_url), await _redis_pid(first.redis_url)] == pids
    finally:
        first.stop()
    assert all(_gone(pid) for pid in pids)


_CRASHING_OWNER = """
import pathlib, sys
import redis
from dispatch.embedded import start_embedded

data_dir = pathlib.Path(sys.argv[1])
services = start_embedded(data_dir)
pg_pid = (data_dir / "postgres" / "postmaster.pid").read_text().split()[0]
with redis.Redis.from_url(services.redis_url) as client:
    redis_pid = client.info("server")["process_id"]
print(pg_pid, redis_pid, flush=True)
sys.stdin.read()  # until killed
"""


def test_servers_of_a_killed_process_are_adopted_and_stopped(data_root: Path) -> None:
    pids: list[int] = []
    try:
        with subprocess.Popen(
            [sys.executable, "-c", _CRASHING_OWNER, str(data_root)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as owner:
            assert owner.stdout is not None
            pids = [int(pid) for pid in owner.stdout.readline().split()]
            owner.kill()  # no atexit: its servers are orphaned
        assert len(pids) == 2
        assert not any(_gone(pid) for pid in pids)

        services = start_embedded(data_root)
        with redis.Redis.from_url(services.redis_url) as client:
            assert int(client.info("server")["process_id"]) == pids[1]
        services.stop()
        assert all(_gone(pid) for pid in pids)
    finally:
        for pid in pids:  # only if the test failed half-way
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


async def test_stale_postmaster_pid_of_another_program_is_ignored(data_root: Path) -> None:
    services = start_embedded(data_root, redis=False)
    pid_file = data_root / "postgres" / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    services.stop()
    # As after a reboot: the recorded pid now belongs to some other running program (us).
    pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")

    services = start_embedded(data_root, redis=False)
    try:
        conn = await asyncpg.connect(services.database_url)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
    finally:
        services.stop()


async def test_failures_are_reported_with_the_folder(data_root: Path) -> None:
    blocker = data_root / "postgres"
    blocker.write_text("not a PostgreSQL data folder")
    with pytest.raises(EmbeddedError, match=re.escape(str(blocker))):
        start_embedded(data_root)
    # Redis was never started, as PostgreSQL comes first.
    assert not (data_root / "redis").exists()

    not_a_folder = data_root / "file"
    not_a_folder.write_text("")
    with pytest.raises(EmbeddedError, match="ERSS_DATA_DIR"):
        start_embedded(not_a_folder)

    # Once the cause is gone, a retry in the same process works.
    blocker.unlink()
    services = start_embedded(data_root, redis=False)
    try:
        assert await _postgres_pid(services.database_url) > 0
    finally:
        services.stop()


def test_services_without_servers_stop_quietly() -> None:
    services = EmbeddedServices(database_url="", redis_url="")
    services.stop()

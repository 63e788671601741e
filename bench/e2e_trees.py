"""Source trees under test: one ``erss serve --demo`` per tree, run from that tree.

A tree is a checkout (``--tree before=/tmp/wt-before``). Its server runs as
``python bench/e2e_serve.py serve --demo`` with the tree first on PYTHONPATH and as its
working directory, with the shared interpreter: the tree's own ``dispatch`` is imported,
its migrations make its schema, and the statement counter wraps it from outside.
Each tree's server gets a schema and key prefix of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e_common import BENCH_DIR, ServerProcess, Storage, child_env, free_port


@dataclass(frozen=True)
class Tree:
    """A named source tree."""

    name: str
    path: Path

    @property
    def ident(self) -> str:
        return re.sub(r"[^a-z0-9_]", "_", self.name.lower())[:20]


def parse_tree(text: str) -> Tree:
    """``name=path``; the path must hold a ``dispatch`` package."""
    name, sep, path = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--tree takes name=path, not {text!r}")
    root = Path(path).resolve()
    if not (root / "dispatch" / "__init__.py").is_file():
        raise ValueError(f"--tree {name}: {root} holds no dispatch package")
    return Tree(name, root)


def tree_env(tree: Tree, extra: dict[str, str]) -> dict[str, str]:
    env = child_env(extra)
    env["PYTHONPATH"] = str(tree.path)
    return env


class Fleet:
    """The MDT fleet process (bench/e2e_fleet.py) of one server, driven over its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _ask(self, command: str | None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the MDT fleet exited (code {await self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ready(self, timeout_s: float) -> int:
        async with asyncio.timeout(timeout_s):
            return int((await self._ask(None))["ready"])

    async def count(self) -> tuple[int, int]:
        """(offers since the last mark, units busy or incidents being closed)"""
        answer = await self._ask("count")
        return int(answer["offers"]), int(answer["busy"]) + int(answer["closing"])

    async def mark(self) -> dict[str, Any]:
        return await self._ask("mark")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await self._ask_quit()
                async with asyncio.timeout(15):
                    await self.proc.wait()
            except (TimeoutError, OSError, RuntimeError):
                self.proc.kill()
                await self.proc.wait()

    async def _ask_quit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"quit\n")
        await self.proc.stdin.drain()


@dataclass
class TreeServer:
    """One tree's running server and what the bench needs to drive it."""

    tree: Tree
    mode: str
    storage: Storage
    server: ServerProcess
    base_url: str
    credentials: dict[str, Any]
    credentials_path: Path
    extra_units_path: Path | None
    counts_path: Path | None
    fleet: Fleet | None = None
    log: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.tree.name

    @property
    def secret(self) -> str:
        return str(self.credentials["gateways"]["panic"])

    async def counts(self) -> dict[str, Any] | None:
        """The server's statement counts so far (None when counting is off)."""
        if self.counts_path is None:
            return None
        previous = -1
        if self.counts_path.exists():
            previous = json.loads(self.counts_path.read_text())["seq"]
        os.kill(self.server.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if self.counts_path.exists():
                data: dict[str, Any] = json.loads(self.counts_path.read_text())
                if data["seq"] != previous:
                    return data
        raise RuntimeError(f"{self.server.name} did not write its statement counts")

    async def start_fleet(self, close: bool, timeout_s: float) -> int:
        argv = [
            sys.executable,
            str(BENCH_DIR / "e2e_fleet.py"),
            "--url",
            self.base_url,
            "--credentials",
            str(self.credentials_path),
        ]
        if self.extra_units_path is not None:
            argv += ["--extra-units", str(self.extra_units_path)]
        if not close:
            argv.append("--no-close")
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self.fleet = Fleet(proc)
        return await self.fleet.ready(timeout_s)

    async def stop(self) -> None:
        if self.fleet is not None:
            await self.fleet.stop()
        self.server.stop()


async def run_checked(argv: list[str], env: dict[str, str], what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{out.decode(errors='replace')}")


async def start_tree_server(
    tree: Tree,
    mode: str,
    *,
    database_url: str,
    redis_url: str,
    tag: str,
    workdir: Path,
    extra_per_zone: int,
    count: bool,
    start_timeout: float,
    servers: list[TreeServer],
) -> TreeServer:
    """Prepare a fresh schema (extra units in the full-path mode) and start the server;
    appended to ``servers`` as soon as there is something to stop."""
    schema = f"bench_{tag}_{tree.ident}_{mode}"
    storage = Storage(
        database_url=database_url,
        redis_url=redis_url,
        schema=schema,
        redis_prefix=f"{schema}:",
        floor_schema=schema,
        floor_key=f"{schema}:floor",
    )
    folder = workdir / f"{tree.ident}-{mode}"
    folder.mkdir()
    extra_path: Path | None = None
    if extra_per_zone > 0:
        extra_path = folder / "extra-units.json"
        await run_checked(
            [
                sys.executable,
                str(BENCH_DIR / "e2e_prepare.py"),
                "--database-url",
                database_url,
                "--schema",
                schema,
                "--per-zone",
                str(extra_per_zone),
                "--out",
                str(extra_path),
            ],
            tree_env(tree, {}),
            f"preparing {tree.name}'s schema",
        )
    port = free_port()
    counts_path = folder / "counts.json" if count else None
    env = {
        "ERSS_DATABASE_URL": database_url,
        "ERSS_REDIS_URL": redis_url,
        "ERSS_DB_SCHEMA": schema,
        "ERSS_REDIS_PREFIX": storage.redis_prefix,
        "ERSS_DATA_DIR": str(folder / "data"),
    }
    if counts_path is not None:
        env["ERSS_BENCH_COUNTS"] = str(counts_path)
    server = ServerProcess(
        f"erss serve ({tree.name}, {mode})",
        [
            sys.executable,
            str(BENCH_DIR / "e2e_serve.py"),
            "serve",
            "--demo",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        tree_env(tree, env),
        folder / "erss.log",
        cwd=tree.path,
    )
    credentials_path = folder / "data" / "demo-credentials.json"
    ts = TreeServer(
        tree=tree,
        mode=mode,
        storage=storage,
        server=server,
        base_url=f"http://127.0.0.1:{port}",
        credentials={},
        credentials_path=credentials_path,
        extra_units_path=extra_path,
        counts_path=counts_path,
    )
    servers.append(ts)
    print(f"starting {server.name} from {tree.path} (schema {schema})", file=sys.stderr)
    server.start()
    await server.wait_healthy(ts.base_url, start_timeout)
    ts.credentials = json.loads(credentials_path.read_text())
    return ts

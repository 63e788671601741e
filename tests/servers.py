"""Private PostgreSQL and Redis servers on free loopback ports, for fault tests.

The shared servers must never be stopped, so a test that takes a store down starts its
own: the machine's PostgreSQL binaries (``initdb``, ``pg_ctl``; ``ERSS_PG_BIN`` names their
folder, otherwise the newest ``/usr/lib/postgresql/*/bin``) and ``redis-server`` from
PATH. PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` system
user (``runuser``). Every server is stopped by its own pid or data folder, never by name.
``bench/chaos.py`` uses the same helpers.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """The binaries a private server needs are missing; the message says which."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pg_bin() -> Path:
    explicit = os.environ.get("ERSS_PG_BIN")
    if explicit:
        return Path(explicit)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name or 0))
    if found and (found[-1] / "initdb").exists():
        return found[-1]
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise ServerUnavailable(
        "no PostgreSQL binaries (initdb, pg_ctl): install postgresql, or set ERSS_PG_BIN"
    )


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free port; ``stop()``/``start()`` at will."""

    def __init__(self) -> None:
        self._bin = _pg_bin()
        self.port = free_port()
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        # Not under pytest's tmp_path: as root its parents are closed to the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="erss-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.running = False
        if self._as_root:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                raise ServerUnavailable(
                    "running as root, PostgreSQL needs the 'postgres' system user (created by"
                    " Debian's postgresql package): create it, or run the tests as a user"
                ) from None
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
            "-E", "UTF8",
        )  # fmt: skip

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bin / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}")

    def start(self) -> None:
        """Start (or start again) on the same port and data."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
            " -c fsync=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
            "-w", "-t", "30", "start",
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop: ``fast`` ends the sessions cleanly, ``immediate`` is a crash (WAL replay
        on the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        self.running = False

    def destroy(self) -> None:
        """Stop if running and delete the cluster."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A redis-server on a free port with an append-only file, as a production Redis
    would run, so a restart keeps the stream and the index."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerUnavailable("no redis-server on PATH: install redis-server")
        self._binary = binary
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="erss-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether this object started the server and has not stopped it."""
        return self._proc is not None

    def start(self) -> None:
        """Start (or start again) on the same port and data; returns once it answers."""
        command = [
            self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
            str(self.root), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--daemonize", "no",
        ]  # fmt: skip
        with open(self.root / "log", "ab") as log:
            self._proc = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.root / 'log').read_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop by pid: SIGTERM flushes the append-only file, SIGKILL is a crash."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(sig)
        self._proc.wait(timeout=30)
        self._proc = None

    def destroy(self) -> None:
        """Stop if running and delete the data."""
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

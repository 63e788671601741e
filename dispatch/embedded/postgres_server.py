"""The private PostgreSQL server: pgserver's bundled binaries on ``data_dir/postgres``."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from dispatch.embedded.errors import EmbeddedError
from dispatch.embedded.ownership import claim, locked, owner_alive
from dispatch.embedded.processes import KILL_WAIT_S, alive, send_signal, wait_gone

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

_log = logging.getLogger(__name__)

_PG_STOP_TIMEOUT_S = 30


class PrivatePostgres:
    """A PostgreSQL server run by pgserver on ``data_dir/postgres``."""

    def __init__(
        self,
        *,
        data_dir: Path,
        server: PostgresServer,
        url: str,
        pid: int,
        owned: bool,
    ) -> None:
        self.url = url
        self._data_dir = data_dir
        self._server = server
        self._pid = pid
        self._owned = owned

    @classmethod
    def start(cls, data_dir: Path) -> PrivatePostgres:
        """Start the server, or attach to the one already running on this folder."""
        pgdata = data_dir / "postgres"
        owner_file = data_dir / "postgres.owner.json"
        with warnings.catch_warnings():
            # pgserver resolves a runtime folder (for its lock file) when imported; platformdirs
            # warns if XDG_RUNTIME_DIR is unset, as under services and containers, and falls
            # back to /tmp/runtime-<uid>, which is fine here.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            from pgserver.postgres_server import get_server
        was_running = _live_postmaster(pgdata) is not None
        if not was_running:
            # A handle cached by an earlier start in this process would be returned as is,
            # still pointing at the server that is no longer there.
            _drop_cached(pgdata.resolve())
        try:
            # cleanup_mode=None: pgserver's own stop-at-exit only stops the server when no other
            # process holds a handle, judged from a pid list that a crashed process never leaves.
            # Stopping is decided here instead (owner file) and done by stop().
            server = get_server(pgdata, cleanup_mode=None)
            info = server.get_postmaster_info()
        except Exception as err:  # pgserver fails with asserts, CalledProcessError, OSError...
            # pgserver caches its handle before starting; a retry must not get the broken one.
            _drop_cached(pgdata.resolve())
            raise EmbeddedError(_postgres_start_message(pgdata, err)) from err

        user = server.postgres_user
        port = info.port or 5432
        if info.socket_dir is not None:
            # Percent-encoded: the socket folder may hold characters with a meaning in URLs.
            host = quote(str(info.socket_dir), safe="")
            url = f"postgresql://{user}@/postgres?host={host}&port={port}"
        else:  # pgserver uses TCP on loopback only where Unix sockets are missing (Windows)
            url = f"postgresql://{user}@{info.hostname}:{port}/postgres"

        owned = not was_running or not owner_alive(owner_file)
        if owned:
            claim(owner_file)
        return cls(data_dir=data_dir, server=server, url=url, pid=info.pid, owned=owned)

    def stop(self) -> None:
        """Stop the server if this handle owns it; always drop pgserver's bookkeeping."""
        with locked(self._data_dir):
            try:
                if self._owned:
                    self._shutdown()
                    (self._data_dir / "postgres.owner.json").unlink(missing_ok=True)
                    self._owned = False
            finally:
                self._release()

    def _shutdown(self) -> None:
        pgdata = self._data_dir / "postgres"
        if not alive(self._pid, "postgres"):
            return
        from pgserver._commands import POSTGRES_BIN_PATH  # imported by start() already

        pg_ctl = POSTGRES_BIN_PATH / "pg_ctl"
        # Fast mode: ends open sessions instead of waiting for the app's pool to close.
        command = [
            str(pg_ctl), "-D", str(pgdata), "-m", "fast", "-w", "-t", str(_PG_STOP_TIMEOUT_S),
            "stop",
        ]  # fmt: skip
        try:
            # As root the server runs as pgserver's system user, and pg_ctl refuses root.
            subprocess.run(  # noqa: S603 - fixed binary and arguments, no shell
                command,
                user=self._server.system_user,
                check=True,
                capture_output=True,
                text=True,
                timeout=_PG_STOP_TIMEOUT_S + 10,
            )
        except subprocess.CalledProcessError as err:
            _log.warning("pg_ctl stop failed for %s: %s", pgdata, (err.stderr or "").strip())
        except (subprocess.TimeoutExpired, OSError) as err:
            _log.warning("pg_ctl stop failed for %s: %s", pgdata, err)
        # pg_ctl returns once postmaster.pid is gone, a moment before the process exits.
        if wait_gone(self._pid, KILL_WAIT_S):
            return
        # SIGQUIT is PostgreSQL's immediate shutdown: it stops the backends too, and the next
        # start replays the WAL, so nothing committed is lost. SIGKILL would orphan backends.
        _log.warning("PostgreSQL %d did not stop; sending SIGQUIT", self._pid)
        send_signal(self._pid, "postgres", signal.SIGQUIT)
        if wait_gone(self._pid, KILL_WAIT_S):
            return
        send_signal(self._pid, "postgres", signal.SIGKILL)
        if not wait_gone(self._pid, KILL_WAIT_S):
            raise EmbeddedError(
                f"the private PostgreSQL server (pid {self._pid}, data {pgdata}) does not stop; "
                f"stop it with `kill -QUIT {self._pid}`"
            )

    def _release(self) -> None:
        server = self._server
        with contextlib.suppress(OSError, ValueError, KeyError):
            server.cleanup()  # with cleanup_mode=None: only removes our pid from its list
        # get_server() caches one handle per folder for the life of the process; without
        # dropping it, a later start here would get this stopped server back.
        _drop_cached(server.pgdata, only=server)
        atexit.unregister(server._cleanup)


def _drop_cached(pgdata: Path, only: PostgresServer | None = None) -> None:
    """Forget pgserver's cached handle for the resolved pgdata (only if it is `only`, if given)."""
    from pgserver.postgres_server import PostgresServer

    cached = PostgresServer._instances.get(pgdata)
    if cached is None or (only is not None and cached is not only):
        return
    del PostgresServer._instances[pgdata]
    # Its exit hook (a no-op with cleanup_mode=None) would keep it alive until exit.
    atexit.unregister(cached._cleanup)


def _postgres_start_message(pgdata: Path, err: BaseException) -> str:
    message = f"could not start the private PostgreSQL server in {pgdata}: {err}."
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        message += (
            " Running as root: PostgreSQL runs as the system user 'pgserver', which needs "
            "`useradd` to be created and must be able to write that folder."
        )
    log_tail = _tail(pgdata / "log")
    if log_tail:
        message += f" Last lines of {pgdata / 'log'}:\n{log_tail}\n"
    message += (
        " Fix the cause (the folder must be writable, empty or a PostgreSQL data folder), "
        "or set ERSS_DATABASE_URL to use an existing PostgreSQL server."
    )
    return message


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _live_postmaster(pgdata: Path) -> int | None:
    """The pid of the postmaster serving pgdata, if one is running.

    Also removes a stale ``postmaster.pid`` whose pid now belongs to another program (common
    after a reboot or a container restart): pgserver would take that program for the server,
    and PostgreSQL would refuse to start next to it. Only a program that is not PostgreSQL at
    all counts: deleting the file of a live postmaster would let a second one corrupt the data.
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None
    if alive(pid, "postgres"):
        return pid
    if alive(pid):
        _log.warning("removing stale %s: pid %d is not PostgreSQL", pid_file, pid)
        pid_file.unlink(missing_ok=True)
    return None

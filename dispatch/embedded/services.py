"""The public entry point: :func:`start_embedded` and the :class:`EmbeddedServices` it returns."""

from __future__ import annotations

import atexit
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dispatch.embedded.errors import EmbeddedError
from dispatch.embedded.ownership import locked
from dispatch.embedded.postgres_server import PrivatePostgres
from dispatch.embedded.redis_server import PrivateRedis

_log = logging.getLogger(__name__)


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
        with locked(data_dir):
            if database:
                postgres = PrivatePostgres.start(data_dir)
                servers.append(postgres)
                database_url = postgres.url
            if redis:
                redis_server = PrivateRedis.start(data_dir)
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

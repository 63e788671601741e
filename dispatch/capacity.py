"""How many websockets one instance holds open.

Every socket is a file descriptor, and so is every gateway request, PostgreSQL and
Redis connection: a flood of MDTs or consoles reconnecting at once must not take the
last descriptors and leave the 112 gateways unable to post. Beyond the limit a new
websocket is told to come back later (close code 1013) before any work is done for it.
"""

from __future__ import annotations

import resource

# Descriptors kept for everything that is not a websocket (gateway requests, database
# and Redis pools, log files) when the limit is derived from the process's own.
RESERVED_FDS = 1_024


def raise_descriptor_limit() -> int:
    """Raise this process's soft descriptor limit to its hard one (1,024 by default on
    most hosts, far below what a fleet of MDTs needs); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # not allowed here: keep what we have
    return soft


def limit_for(descriptors: int) -> int:
    """Websockets for a process with that many descriptors: all but the reserve, and
    never more than half when the limit is small (the reserve would eat it all)."""
    if descriptors == resource.RLIM_INFINITY:
        return 100_000
    return max(descriptors - RESERVED_FDS, descriptors // 2)


def default_limit() -> int:
    """The websocket limit for this process, after raising its descriptor limit."""
    return limit_for(raise_descriptor_limit())


class ConnectionLimit:
    """A counter of open websockets with a ceiling; single event loop, no locking."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a websocket limit must be at least 1")
        self.limit = limit
        self.open = 0

    def try_acquire(self) -> bool:
        """Count one more socket if there is room; False when at the limit."""
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        """A counted socket closed."""
        self.open = max(0, self.open - 1)

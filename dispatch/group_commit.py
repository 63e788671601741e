"""Group commit: reports that arrive together are written together, in one transaction.

Under load, most of a report's cost in PostgreSQL is per transaction (BEGIN, COMMIT and
its WAL flush, a connection from the pool); a burst of reports pays it once. Each report
still runs in its own savepoint and gets its own answer: one that fails rolls back to its
savepoint alone and the others commit. Nothing waits for company: a report that arrives
while fewer than ``max_running`` groups are being written starts a group of its own at
once; reports arriving while all are busy queue up and go together in the next one.

If the group's transaction itself fails (PostgreSQL aborted it, the connection was lost,
the commit failed), no report of it was written, and each is run again on its own (with
the usual retries of a deadlock or serialization failure), so each still gets the answer
it would have had alone: its result, its own error, or the outage. A report that waits
for a lock another group holds (a unit it claimed) gives up after ``lock_wait_ms`` and
runs alone after its group, so two groups never wait a deadlock check out.

Intake uses it only where ``ERSS_INTAKE_GROUP_COMMIT`` asks: on a disk where COMMIT's
flush is cheap the work is CPU, and grouping serialises what would run side by side
(measured in docs/benchmarks.md, "Dispatch core (#13)").
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from dispatch.retry import in_transaction
from dispatch.transient import is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[asyncpg.Connection], Awaitable[T]]


@dataclass(slots=True)
class _Item(Generic[T]):
    work: Work[T]
    future: asyncio.Future[T]
    result: T | None = None
    error: BaseException | None = None
    alone: bool = False  # failed in a way that running it on its own may not repeat


class GroupCommit:
    """Runs units of work in shared transactions, each in its own savepoint."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int = 32,
        max_running: int = 4,
        observe: Callable[[int], None] | None = None,
        lock_wait_ms: int = 50,
    ) -> None:
        self._pool = pool
        self._lock_wait_ms = lock_wait_ms
        self._max_batch = max_batch
        self._max_running = max_running
        self._observe = observe  # units of work per committed transaction
        self._pending: deque[_Item[Any]] = deque()
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, work: Work[T]) -> T:
        """Run ``work`` in a transaction (shared with others arriving now); its result,
        or the exception it raised."""
        item: _Item[T] = _Item(work, asyncio.get_running_loop().create_future())
        item.future.add_done_callback(_retrieved)
        self._pending.append(item)
        self._start()
        # Shielded: a caller that goes away (a client hung up) does not cancel the others'
        # transaction; its own report is still written, and a retry gets its answer.
        return await asyncio.shield(item.future)

    def _start(self) -> None:
        while self._pending and len(self._running) < self._max_running:
            batch = [
                self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))
            ]
            task = asyncio.create_task(self._write(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start()

    async def _write(self, batch: list[_Item[Any]]) -> None:
        try:
            if len(batch) == 1:
                await self._alone(batch[0])
                return
            try:
                await self._together(batch)
            except Exception as err:  # the group's transaction failed: nothing was written
                log.info(
                    "a group of %d reports failed together (%s); each runs alone",
                    len(batch),
                    type(err).__name__,
                )
                for item in batch:
                    item.result, item.error, item.alone = None, None, True
            # Those written are answered now, before any that must run again alone.
            for item in batch:
                if not item.alone:
                    _settle(item)
            for item in batch:
                if item.alone:
                    await self._alone(item)
        except asyncio.CancelledError:  # shutting down: nobody is left to answer
            for item in batch:
                item.future.cancel()
            raise
        except Exception as err:  # a bug here must not leave a caller waiting forever
            log.exception("group commit failed")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)

    async def _together(self, batch: list[_Item[Any]]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            # A group holds every lock its reports took until it commits; two groups
            # each waiting for a unit the other claimed would wait for PostgreSQL's
            # deadlock check (a second) with everything queued behind them. A report
            # that waits longer than this for a lock goes on its own after the group.
            await conn.execute(f"SET LOCAL lock_timeout = '{self._lock_wait_ms}ms'")
            for item in batch:
                try:
                    async with conn.transaction():  # a savepoint: undone alone on failure
                        item.result = await item.work(conn)
                except Exception as err:
                    if is_transient(err) or isinstance(err, asyncpg.LockNotAvailableError):
                        # A deadlock with another group (transient: dispatch.transient),
                        # or the store going away: not the report's fault; it is run
                        # on its own after this group.
                        item.alone = True
                    else:
                        item.error = err
        written = sum(1 for item in batch if item.error is None and not item.alone)
        if self._observe is not None and written:
            self._observe(written)

    async def _alone(self, item: _Item[Any]) -> None:
        try:
            item.result = await in_transaction(self._pool, item.work)
            item.error = None
        except Exception as err:
            item.error = err
        else:
            if self._observe is not None:
                self._observe(1)
        _settle(item)


def _retrieved(future: asyncio.Future[Any]) -> None:
    # A caller that went away leaves its outcome unread; reading it here keeps asyncio
    # from logging it as never retrieved.
    if not future.cancelled():
        future.exception()


def _settle(item: _Item[Any]) -> None:
    if item.future.done():  # pragma: no cover - futures are settled once
        return
    if item.error is not None:
        item.future.set_exception(item.error)
    else:
        item.future.set_result(item.result)

"""``erss`` with the benchmark's statement counter: runs ``dispatch.cli`` (of whatever
tree is first on PYTHONPATH) after wrapping asyncpg and Starlette in this process only.

    ERSS_BENCH_COUNTS=/tmp/counts.json PYTHONPATH=<tree> python bench/e2e_serve.py serve --demo

Nothing in the server's code changes. Every asyncpg call is counted by the request that
made it: the ASGI scope's method and path (digits folded to ``{n}``), ``lifespan`` for the
background tasks started with the app (relay, queue worker, sweeps). Counted:

- statements: every query sent (``fetch*``, ``execute``, ``executemany``, and simple
  queries such as ``BEGIN``, ``COMMIT`` and the pool's reset on release);
- round trips: statements plus the prepares of statements not yet in the connection's
  cache (asyncpg prepares a statement in a round trip of its own the first time a
  connection sees it, and again after the cache evicts it);
- transactions: simple queries that begin one.

SIGUSR2 writes the totals so far, with the most frequent statements, to the file in
ERSS_BENCH_COUNTS (atomically, with a sequence number), so the benchmark can take the
difference over a measured step.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
from starlette.applications import Starlette

_DIGITS = re.compile(r"/\d+")
_origin: contextvars.ContextVar[str] = contextvars.ContextVar("bench_origin", default="other")

# (origin, measure) -> count; and (origin, statement's first words) -> count.
counts: Counter[tuple[str, str]] = Counter()
statements: Counter[tuple[str, str]] = Counter()
_dumps = 0


def _label(query: str) -> str:
    return " ".join(query.split())[:90]


def _count(query: str, simple: bool) -> None:
    origin = _origin.get()
    counts[origin, "statements"] += 1
    counts[origin, "round_trips"] += 1
    if simple and query.lstrip()[:5].upper() in ("BEGIN", "START"):
        counts[origin, "transactions"] += 1
    statements[origin, _label(query)] += 1


def install() -> Callable[[], None]:
    """Wrap asyncpg.Connection and Starlette (class attributes: every instance); returns
    what puts the originals back."""
    connection: Any = asyncpg.connection.Connection
    execute = connection.execute
    do_execute = connection._do_execute
    get_statement = connection._get_statement

    async def counted_execute(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if not args:  # the simple query protocol; with args it goes through _do_execute
            _count(query, simple=True)
        return await execute(self, query, *args, **kwargs)

    async def counted_do_execute(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        _count(query, simple=False)
        return await do_execute(self, query, *args, **kwargs)

    async def counted_get_statement(
        self: Any,
        query: str,
        timeout: float | None,  # noqa: ASYNC109 (asyncpg's own signature)
        *,
        use_cache: bool = True,
        ignore_custom_codec: bool = False,
        record_class: Any = None,
        **kwargs: Any,
    ) -> Any:
        # The cache key as asyncpg builds it: a miss means a Parse round trip.
        key_class = record_class if record_class is not None else self._protocol.get_record_class()
        cached = use_cache and self._stmt_cache.has((query, key_class, ignore_custom_codec))
        if not cached:
            origin = _origin.get()
            counts[origin, "round_trips"] += 1
            counts[origin, "prepares"] += 1
        return await get_statement(
            self,
            query,
            timeout,
            use_cache=use_cache,
            ignore_custom_codec=ignore_custom_codec,
            record_class=record_class,
            **kwargs,
        )

    connection.execute = counted_execute
    connection._do_execute = counted_do_execute
    connection._get_statement = counted_get_statement

    call = Starlette.__call__

    async def labelled_call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            label = "lifespan"
        else:
            method = scope.get("method", "WS") if kind == "http" else "WS"
            label = f"{method} {_DIGITS.sub('/{n}', scope.get('path', ''))}"
        token = _origin.set(label)
        try:
            await call(self, scope, receive, send)
        finally:
            _origin.reset(token)

    Starlette.__call__ = labelled_call  # type: ignore[method-assign]

    def uninstall() -> None:
        connection.execute = execute
        connection._do_execute = do_execute
        connection._get_statement = get_statement
        Starlette.__call__ = call  # type: ignore[method-assign]

    return uninstall


def dump(path: Path) -> None:
    """Write the totals so far (atomically: the reader never sees half a file)."""
    global _dumps
    _dumps += 1
    by_origin: dict[str, dict[str, int]] = {}
    for (origin, measure), n in counts.items():
        by_origin.setdefault(origin, {})[measure] = n
    top: dict[str, dict[str, int]] = {}
    for (origin, text), n in statements.items():
        top.setdefault(origin, {})[text] = n
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"seq": _dumps, "pid": os.getpid(), "counts": by_origin, "statements": top})
    )
    tmp.replace(path)


def main() -> int:
    target = os.environ.get("ERSS_BENCH_COUNTS")
    if target:
        path = Path(target)
        install()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            del signum, frame
            dump(path)

        signal.signal(signal.SIGUSR2, on_signal)
    from dispatch.cli import main as erss_main

    code: int = erss_main(sys.argv[1:])
    return code


if __name__ == "__main__":
    sys.exit(main())

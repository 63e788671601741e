"""No request waits for a thread: every route and dependency is async.

FastAPI runs a plain ``def`` endpoint or dependency in its thread pool (40 threads):
a thread hop and a GIL hand-over on every request, and under a burst (a reconnect
storm of consoles, a wave of panics) requests queue for threads. Found: three
one-line dependencies were plain functions, on every request and websocket.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant

from dispatch.app import create_app
from dispatch.settings import Settings


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _runs_on_the_loop(call: Callable[..., Any]) -> bool:
    target = call if inspect.isroutine(call) else type(call).__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def test_every_route_and_dependency_is_async(settings: Settings) -> None:
    app = create_app(settings)
    checked, in_threads = 0, []
    for route in app.routes:
        # An included router holds its routes as contexts with the effective dependant
        # (the app's own dependencies included); a plain route has its own.
        contexts = getattr(route, "effective_route_contexts", lambda r=route: [r])()
        for context in contexts:
            dependant = getattr(context, "dependant", None)
            if dependant is None:  # the console's static files: Starlette serves them
                continue
            for call in _calls(dependant):
                checked += 1
                if not _runs_on_the_loop(call):
                    in_threads.append(f"{context.path}: {call!r}")
    assert checked > 50
    assert in_threads == []

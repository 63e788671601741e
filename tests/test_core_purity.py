"""dispatch.core is pure: importing it loads no database, Redis or web module, and its
source reads no clock and awaits nothing (time is a value in the snapshot). A library
may load asyncio for itself (geopy does); the core's own source must not use it."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import dispatch.core

CORE = Path(dispatch.core.__file__).parent
MODULES = sorted(f"dispatch.core.{m.name}" for m in pkgutil.iter_modules([str(CORE)]))
FORBIDDEN_MODULES = ("asyncpg", "redis", "fastapi", "starlette", "uvicorn", "httpx", "websockets")
CLOCKS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
    ("time", "time_ns"),
    ("time", "sleep"),
}


def test_every_core_module_is_checked() -> None:
    assert {"facts", "place", "rank", "plans", "decide", "lifecycle", "correlate"} <= {
        m.rsplit(".", 1)[1] for m in MODULES
    }


def test_importing_the_core_loads_no_io_module() -> None:
    """In a fresh interpreter, so that what other tests imported does not count."""
    probe = (
        "import importlib, json, sys\n"
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN_MODULES]
    assert not bad, f"dispatch.core pulls in I/O modules: {bad}"


def test_the_core_reads_no_clock() -> None:
    found = []
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in CLOCKS
            ):
                found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module in ("time", "asyncio"):
                found.append(f"{path.name}:{node.lineno} from {node.module} import ...")
            if isinstance(node, ast.Import):
                found += [
                    f"{path.name}:{node.lineno} import {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] in {"time", "asyncio", *FORBIDDEN_MODULES}
                ]
    assert not found, f"dispatch.core reads a clock or does I/O: {found}"

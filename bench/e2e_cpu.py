"""Who used the CPU during a measured run, read from /proc: the server, its PostgreSQL
backends (matched by client port), Redis, the load generators, softirq, other tenants."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


def _proc_cpu_ticks() -> dict[int, tuple[str, int]]:
    """(command line, user+system ticks) of every process we can read; {} off Linux."""
    found: dict[int, tuple[str, int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
            # PostgreSQL backends show their client's address and port here.
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # Field 2 is the command name in parentheses, which may itself hold spaces.
        fields = raw[raw.rindex(")") + 2 :].split()
        name = cmdline.strip() or raw[raw.index("(") + 1 : raw.rindex(")")]
        found[int(entry.name)] = (name, int(fields[11]) + int(fields[12]))
    return found


def _local_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets a process holds (to find its PostgreSQL backends)."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


_BACKEND_PORT = re.compile(r"^postgres: .*\((\d+)\)")


def _machine_ticks() -> list[int]:
    """All CPUs' jiffies since boot (user nice system idle iowait irq softirq steal);
    zeros off Linux."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    except OSError:
        return [0] * 8
    # guest time is already counted in user, so only the first eight fields add up.
    return [int(v) for v in first] + [0] * (8 - len(first))


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSample:
    """CPU use during one wrk run, in percent of one core (200 % = both cores)."""

    by_role: dict[str, float]
    machine_busy_pct: float


class CpuMeter:
    """Who used the CPU between start() and stop(): the server, PostgreSQL, Redis, wrk.

    Only meant around one wrk run: any other child of ours that exits in between
    would be counted as wrk.
    """

    def __init__(self, server_pid: int) -> None:
        self._server_pid = server_pid
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._cores = os.cpu_count() or 1

    def _role(self, pid: int, name: str, server_ports: set[int]) -> str | None:
        if pid == self._server_pid:
            return "server (python)"
        if pid == os.getpid():
            return "bench (python)"
        backend = _BACKEND_PORT.match(name)
        if backend and int(backend[1]) in server_ports:
            return "postgresql (server's backends)"
        if name.startswith("postgres"):
            # Background writers, and other tenants' sessions on this shared server.
            return "postgresql (other)"
        if name.startswith("redis"):
            return "redis (shared)"
        return None

    def start(self) -> None:
        self._server_ports = _local_ports(self._server_pid)
        self._t0 = time.monotonic()
        self._procs0 = _proc_cpu_ticks()
        self._machine0 = _machine_ticks()
        self._children0 = _children_cpu_s()

    def stop(self) -> CpuSample:
        elapsed = time.monotonic() - self._t0
        procs1 = _proc_cpu_ticks()
        # The pool may have opened connections during the run.
        server_ports = self._server_ports | _local_ports(self._server_pid)
        delta = [b - a for a, b in zip(self._machine0, _machine_ticks(), strict=True)]
        by_role: Counter[str] = Counter()
        for pid, (name, ticks) in procs1.items():
            role = self._role(pid, name, server_ports)
            if role is None:
                continue
            # A process born during the run (wrk, a new backend) started from zero.
            before = self._procs0.get(pid, (name, 0))[1]
            by_role[role] += ticks - before
        scale = 100 / (self._tick * elapsed) if elapsed > 0 else 0.0
        shares = {k: v * scale for k, v in by_role.items()}
        # wrk has exited and been reaped by now, so /proc no longer shows it; its time
        # is in our children's rusage (the servers, still running, are not).
        if elapsed > 0:
            shares["wrk"] = 100 * (_children_cpu_s() - self._children0) / elapsed
        total = sum(delta)
        machine = 0.0
        if total > 0:
            to_pct = 100 * self._cores / total
            machine = (total - delta[3] - delta[4]) * to_pct
            # Loopback networking runs in softirq, charged to no process.
            shares["kernel softirq"] = (delta[5] + delta[6]) * to_pct
            shares["steal"] = delta[7] * to_pct
        # Whatever is left: other tenants of this shared machine, and processes that
        # came and went during the run.
        shares["other"] = max(0.0, machine - sum(shares.values()))
        return CpuSample(shares, machine)


def cpu_text(cpu: CpuSample | None) -> str:
    if cpu is None or not cpu.by_role:
        return "n/a"
    ranked = sorted(cpu.by_role.items(), key=lambda x: -x[1])
    parts = [f"{role} {pct:.0f}%" for role, pct in ranked if pct >= 1]
    return ", ".join(parts) + f"; machine {cpu.machine_busy_pct:.0f}% of {os.cpu_count()}00%"

"""What bench/fanout.py reads of processes in /proc: the servers' resident memory and CPU
time, and CPU per role (server, PostgreSQL, Redis, the client workers) over a window."""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import fanout_storm as storm
from e2e import CpuMeter, CpuSample, _proc_cpu_ticks


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FanoutCpuMeter(CpuMeter):
    """bench/e2e.py's per-role CPU accounting, with the client workers as their own role
    (they share the two cores with the server, so their share matters)."""

    def __init__(
        self,
        server_pids: Sequence[int],
        worker_pids: Sequence[int],
        storm_pids: Sequence[int] = (),
    ) -> None:
        super().__init__(server_pids[0])
        self._servers = set(server_pids)
        self._server_order = list(server_pids)
        self._workers = set(worker_pids)
        self._storm = set(storm_pids)
        self.top_others: list[tuple[str, float]] = []
        self._cpu0: dict[int, float] = {}
        self.by_instance: list[float] = []  # % of one core, in server_pids' order

    def _role(self, pid: int, name: str, server_ports: set[int]) -> str | None:
        if pid in self._workers:
            return "client workers (python)"
        if pid in self._storm:
            return storm.STORM_ROLE
        if pid in self._servers:
            # Every instance counts as the server; PostgreSQL backends are told apart
            # by the first instance's ports only (the others' show as "other").
            return "server (python)"
        return super()._role(pid, name, server_ports)

    def start(self) -> None:
        self._cpu0 = {pid: cpu_seconds(pid) for pid in self._server_order}
        super().start()

    def stop(self) -> CpuSample:
        ticks = _proc_cpu_ticks()
        elapsed = time.monotonic() - self._t0
        sample = super().stop()
        self.by_instance = [
            (cpu_seconds(pid) - before) / elapsed * 100 if elapsed > 0 else math.nan
            for pid, before in self._cpu0.items()
        ]
        # e2e's meter charges exited children to wrk; no child exits here.
        sample.by_role.pop("wrk", None)
        # "other" is whatever no role claims: name the biggest, so that another
        # tenant's test run is told apart from a process this benchmark forgot.
        others: Counter[str] = Counter()
        for pid, (name, now) in ticks.items():
            if self._role(pid, name, self._server_ports) is None:
                before = self._procs0.get(pid, (name, 0))[1]
                others[" ".join(name.split()[:2])[:60]] += now - before
        scale = 100 / (os.sysconf("SC_CLK_TCK") * elapsed) if elapsed > 0 else 0.0
        self.top_others = [(name, n * scale) for name, n in others.most_common(3) if n > 0]
        return sample

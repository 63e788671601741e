"""The full-path mode: open-loop panics at fixed rates, every one offered to a connected
MDT whose crew finishes at once; one step is one rate against one tree's server.

Per step it reports the sustained rate of offered incidents, POST -> MDT offer latency,
the server's statements and round trips per offered panic (bench/e2e_serve.py), the
CPU of every process involved, and the load generator's own CPU and achieved send
rate, which show whether the generator kept up.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e_common import BENCH_DIR, child_env, percentile, ratio
from e2e_cpu import CpuMeter, CpuSample
from e2e_trees import TreeServer

BACKENDS = "postgresql (server's backends)"
TOP_STATEMENTS = 12


class StepCpuMeter(CpuMeter):
    """e2e's meter with the MDT fleet as a role; the only child that exits during a step
    is the load generator, so the time of exited children is its."""

    def __init__(self, server_pid: int, fleet_pid: int | None) -> None:
        super().__init__(server_pid)
        self._fleet_pid = fleet_pid

    def _role(self, pid: int, name: str, server_ports: set[int]) -> str | None:
        if pid == self._fleet_pid:
            return "MDT fleet (python)"
        return super()._role(pid, name, server_ports)

    def stop(self) -> CpuSample:
        sample = super().stop()
        if "wrk" in sample.by_role:
            sample.by_role["load generator (python)"] = sample.by_role.pop("wrk")
        return sample


@dataclass
class Step:
    """One rate against one tree."""

    tree: str
    rate: float
    sent: int
    http: Counter[str]
    at_intake: Counter[str]
    joined: int
    offered: int  # incidents of this step whose offer reached an MDT
    latencies: list[float]  # POST sent -> offer received
    sustained: float  # offered incidents per second, first POST to last offer
    send_rate: float
    send_lag_p99: float
    generator_cpu_pct: float
    connection_waits: int
    counts: dict[str, dict[str, int]]  # origin -> measure -> count during the step
    top_statements: list[tuple[str, str, int]]
    cpu: CpuSample
    fleet: dict[str, Any]

    def per_offered(self, measure: str, origin: str | None = None) -> float:
        if not self.offered or not self.counts:
            return math.nan
        if origin is not None:
            return self.counts.get(origin, {}).get(measure, 0) / self.offered
        return sum(c.get(measure, 0) for c in self.counts.values()) / self.offered

    def p(self, pct: float) -> float:
        return percentile(self.latencies, pct)


def count_delta(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> tuple[dict[str, dict[str, int]], list[tuple[str, str, int]]]:
    """Per-origin counts and the most frequent statements between two dumps."""
    if before is None or after is None:
        return {}, []
    counts: dict[str, dict[str, int]] = {}
    for origin, measures in after["counts"].items():
        old = before["counts"].get(origin, {})
        delta = {m: n - old.get(m, 0) for m, n in measures.items() if n - old.get(m, 0)}
        if delta:
            counts[origin] = delta
    top: list[tuple[str, str, int]] = []
    for origin, texts in after["statements"].items():
        old = before["statements"].get(origin, {})
        top += [(origin, text, n - old.get(text, 0)) for text, n in texts.items()]
    top = [t for t in top if t[2] > 0]
    top.sort(key=lambda t: -t[2])
    return counts, top


async def run_generator(
    url: str, secret: str, rate: float, duration: float, tag: str, out: Path
) -> dict[str, Any]:
    """Run bench/e2e_load.py to the end; what it wrote."""
    argv = [
        sys.executable,
        str(BENCH_DIR / "e2e_load.py"),
        "--url",
        url,
        "--rate",
        f"{rate:g}",
        "--duration",
        f"{duration:g}",
        "--tag",
        tag,
        "--out",
        str(out),
    ]
    # The generator signs with the bench's own tree (gateways.signing), not the server's.
    env = child_env({"ERSS_BENCH_GATEWAY_SECRET": secret, "PYTHONPATH": str(BENCH_DIR.parent)})
    proc = await asyncio.create_subprocess_exec(*argv, env=env)
    if await proc.wait() != 0:
        raise RuntimeError(f"the load generator failed with code {proc.returncode}")
    return take_json(out)


def take_json(path: Path) -> dict[str, Any]:
    """Read a small JSON file the generator wrote, and remove it."""
    value: dict[str, Any] = json.loads(path.read_text())
    path.unlink()
    return value


def send_rate(posts: list[list[Any]]) -> float:
    """POSTs written per second, first to last."""
    sent = sorted(p[1] for p in posts)
    return (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 1 else math.nan


def generator_line(generated: dict[str, Any]) -> str:
    """How the generator did: what shows whether it, not the server, set the pace."""
    posts = generated["posts"]
    answers = [p[2] - p[1] for p in posts if p[3]]
    return (
        f"sent {send_rate(posts):.1f}/s (target {generated['rate']:g}/s),"
        f" its CPU {sending_cpu_pct(generated):.0f}% of one core while sending,"
        f" send lag p99 {percentile([p[1] - p[0] for p in posts], 99) * 1000:.1f} ms,"
        f" answer p50 {percentile(answers, 50) * 1000:.1f} ms,"
        f" HTTP {dict(Counter(p[3] for p in posts))}"
    )


def sending_cpu_pct(generated: dict[str, Any]) -> float:
    """The generator's CPU while it was sending, in % of one core."""
    return 100 * float(generated["cpu_sending_s"]) / float(generated["sending_s"])


async def settle(ts: TreeServer, expected: int, timeout_s: float) -> None:
    """Wait until the fleet has every expected offer and every job is finished and
    closed (so the step's statement counts hold all its work), or nothing moved for a
    second."""
    assert ts.fleet is not None
    deadline = time.monotonic() + timeout_s
    last, still_since = (-1, -1), time.monotonic()
    while time.monotonic() < deadline:
        seen = await ts.fleet.count()
        if seen[0] >= expected and seen[1] == 0:
            return
        if seen != last:
            last, still_since = seen, time.monotonic()
        elif time.monotonic() - still_since > 1.0:
            return
        await asyncio.sleep(0.1)


async def full_step(
    ts: TreeServer, rate: float, duration: float, tag: str, workdir: Path, settle_s: float
) -> Step:
    assert ts.fleet is not None
    before = await ts.counts()
    await ts.fleet.mark()
    meter = StepCpuMeter(ts.server.pid, ts.fleet.pid)
    meter.start()
    out = workdir / f"{tag}.json"
    generated = await run_generator(ts.base_url, ts.secret, rate, duration, tag, out)
    cpu = meter.stop()
    posts = generated["posts"]
    accepted = [p for p in posts if p[3] == 202]
    await settle(ts, len({p[4] for p in accepted}), settle_s)
    after = await ts.counts()
    fleet = await ts.fleet.mark()
    offered_at = {int(k): v for k, v in fleet.pop("offered_at").items()}
    latencies = [offered_at[p[4]] - p[1] for p in accepted if p[4] in offered_at]
    offered_ids = {p[4] for p in accepted if p[4] in offered_at}
    first_sent = min((p[1] for p in posts), default=math.nan)
    last_offer = max((offered_at[i] for i in offered_ids), default=math.nan)
    counts, top = count_delta(before, after)
    return Step(
        tree=ts.label,
        rate=rate,
        sent=len(posts),
        http=Counter(str(p[3]) for p in posts),
        at_intake=Counter(str(p[5]) for p in accepted),
        joined=sum(1 for p in accepted if p[6]),
        offered=len(offered_ids),
        latencies=latencies,
        sustained=len(offered_ids) / (last_offer - first_sent) if offered_ids else 0.0,
        send_rate=send_rate(posts),
        send_lag_p99=percentile([p[1] - p[0] for p in posts], 99),
        generator_cpu_pct=sending_cpu_pct(generated),
        connection_waits=generated["connection_waits"],
        counts=counts,
        top_statements=top,
        cpu=cpu,
        fleet=fleet,
    )


def step_statements(step: Step) -> dict[str, Any]:
    """A step's statement counts, per offered panic, for --statements-out."""
    per = max(step.offered, 1)
    return {
        "tree": step.tree,
        "rate": step.rate,
        "offered": step.offered,
        "per_offered_panic": {
            origin: {m: round(n / per, 3) for m, n in measures.items()}
            for origin, measures in step.counts.items()
        },
        "statements": [
            {"origin": origin, "per_offered_panic": round(n / per, 3), "sql": text}
            for origin, text, n in step.top_statements
        ],
    }


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def step_line(step: Step) -> str:
    cpu = step.cpu.by_role
    return (
        f"  {step.tree:<10} {step.rate:>5g} {step.send_rate:>7.1f} {step.sustained:>9.1f}"
        f" {step.offered:>5}/{step.sent:<5}"
        f" {fmt(step.p(50) * 1000):>7} {fmt(step.p(99) * 1000):>8}"
        f" {fmt(step.per_offered('statements')):>6} {fmt(step.per_offered('round_trips')):>6}"
        f" {cpu.get('server (python)', 0):>4.0f}% {cpu.get(BACKENDS, 0):>4.0f}%"
        f" {step.generator_cpu_pct:>4.0f}% {cpu.get('MDT fleet (python)', 0):>4.0f}%"
        f" {cpu.get('other', 0):>4.0f}% {step.cpu.machine_busy_pct:>4.0f}%"
    )


STEP_HEADER = (
    f"  {'tree':<10} {'rate':>5} {'sent/s':>7} {'offered/s':>9} {'offered/sent':>11}"
    f" {'p50 ms':>7} {'p99 ms':>8} {'stmts':>6} {'trips':>6}"
    f" {'srv':>5} {'pg':>5} {'gen':>5} {'mdt':>5} {'oth':>5} {'box':>5}"
)


def print_step_detail(step: Step) -> None:
    """What a step's table line leaves out: answers, errors, the breakdown by origin."""
    http = ", ".join(f"{k}: {v}" for k, v in sorted(step.http.items()))
    intake = ", ".join(f"{k}: {v}" for k, v in sorted(step.at_intake.items()))
    print(
        f"    {step.tree} @ {step.rate:g}/s: HTTP {http}; status at 202 {intake};"
        f" joined {step.joined}; send lag p99 {fmt(step.send_lag_p99 * 1000)} ms;"
        f" waits for a connection {step.connection_waits}"
    )
    fleet = step.fleet
    print(
        f"      fleet: max busy units {fleet['max_busy']}, acks {dict(fleet['acks'])},"
        f" errors {dict(fleet['errors']) or 'none'}, closes {dict(fleet['closes'])}"
    )
    for origin, measures in sorted(step.counts.items(), key=lambda x: -x[1].get("statements", 0)):
        print(
            f"      {origin}: "
            + ", ".join(
                f"{m} {n / step.offered:.2f}" if step.offered else f"{m} {n}"
                for m, n in sorted(measures.items())
            )
            + " per offered panic"
        )
    for origin, text, n in step.top_statements[:TOP_STATEMENTS]:
        print(f"      {n / max(step.offered, 1):6.2f}  {origin}: {text}")


def _med(values: list[float]) -> float:
    """The median (of two rounds, their mean); NaN for none."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


ORIGINS = (
    ("intake", "POST /v1/gateways/panic"),
    ("MDT", "WS /v1/ws/mdt"),
    ("close", "POST /v1/incidents/{n}/close"),
    ("background", "lifespan"),
)


def print_full_summary(steps: list[Step], trees: list[str], rates: list[float]) -> None:
    """Medians over rounds per tree and rate, ratios against the first tree, and what
    shows that the generator did not set the pace."""
    print("\nFull path, median of rounds (rates every tree saturated below were not run)")
    head = f"  {'rate':>5}"
    for name in trees:
        head += f" | {name[:12] + ' offered/s':>22} {'p50 ms':>7} {'p99 ms':>8} {'stmts':>5}"
    for name in trees[1:]:
        head += f" | {name[:12]}/{trees[0][:12]} offered/s, p50, p99"
    print(head)
    for rate in rates:
        if not any(s.rate == rate for s in steps):
            continue
        line = f"  {rate:>5g}"
        meds: list[tuple[float, float, float]] = []
        for name in trees:
            mine = [s for s in steps if s.tree == name and s.rate == rate]
            meds.append(
                (
                    _med([s.sustained for s in mine]),
                    _med([s.p(50) * 1000 for s in mine]),
                    _med([s.p(99) * 1000 for s in mine]),
                )
            )
            offered, p50, p99 = meds[-1]
            stmts = _med([s.per_offered("statements") for s in mine])
            line += f" | {offered:>22.1f} {fmt(p50):>7} {fmt(p99):>8} {fmt(stmts):>5}"
        for other in meds[1:]:
            line += " | " + ", ".join(
                f"{ratio(o, b):.2f}" for o, b in zip(other, meds[0], strict=True)
            )
        print(line)
    print("\nStatements (round trips) per offered panic by origin, median of rounds")
    for name in trees:
        for rate in rates:
            mine = [s for s in steps if s.tree == name and s.rate == rate]
            if not mine:
                continue
            parts = []
            for short, origin in ORIGINS:
                st = _med([s.per_offered("statements", origin) for s in mine])
                rt = _med([s.per_offered("round_trips", origin) for s in mine])
                parts.append(f"{short} {fmt(st)} ({fmt(rt)})")
            total_st = _med([s.per_offered("statements") for s in mine])
            total_rt = _med([s.per_offered("round_trips") for s in mine])
            print(
                f"  {name:<12} {rate:>5g}/s: "
                + ", ".join(parts)
                + f"; all {fmt(total_st)} ({fmt(total_rt)})"
            )
    worst = max(steps, key=lambda s: s.generator_cpu_pct)
    print(
        f"\n  load generator: at most {worst.generator_cpu_pct:.0f}% of one core while"
        f" sending ({worst.tree} at {worst.rate:g}/s); achieved send rate within"
        f" {max(abs(s.send_rate - s.rate) / s.rate for s in steps) * 100:.1f}% of the"
        f" target in every step; send lag p99 at most"
        f" {max(s.send_lag_p99 for s in steps) * 1000:.1f} ms"
    )
    busiest = max(steps, key=lambda s: s.fleet["max_busy"])
    print(
        f"  units busy at once: at most {busiest.fleet['max_busy']} ({busiest.tree} at"
        f" {busiest.rate:g}/s)"
    )

"""What bench/fanout.py prints: the workers' results joined with the measured POSTs, and
the tables of setup, connections and memory, CPU, delivery and the server's log."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e import CpuSample, PostResult, fmt_ms, percentile, print_table
from fanout_clients import ConnectPhase


def mib(value: float) -> str:
    """Bytes as MiB, for the report."""
    return f"{value / 2**20:.1f} MiB"


def kib(value: float) -> str:
    """Bytes as KiB, for the report."""
    return f"{value / 1024:.1f} KiB"


def cpu_rows(
    label: str, sample: CpuSample, others: list[tuple[str, float]]
) -> list[tuple[str, str]]:
    """The rows of one CPU window: per role, then the machine and its biggest others."""
    ranked = sorted(sample.by_role.items(), key=lambda x: -x[1])
    parts = ", ".join(f"{role} {pct:.0f}%" for role, pct in ranked if pct >= 0.5)
    named = "; ".join(f"{name} {pct:.0f}%" for name, pct in others if pct >= 1)
    return [
        (label, parts),
        (
            "",
            f"machine busy {sample.machine_busy_pct:.0f}% of {os.cpu_count()}00%"
            + (f"; biggest others: {named}" if named else ""),
        ),
    ]


_LOG_STAMP = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ ")
_LOG_NUMBERS = re.compile(r"fan-\d+|\d+")


def server_log_summary(path: Path) -> Counter[str]:
    """Warnings and errors the server logged, counted by message with the timestamp,
    unit ids and numbers blanked: a dropped position or a failed stream read shows in
    the log before it shows in the latencies."""
    found: Counter[str] = Counter()
    with path.open(errors="replace") as log:
        for line in log:
            if " WARNING " in line or " ERROR " in line or line.startswith("ERROR:"):
                line = _LOG_STAMP.sub("", line.strip())
                found[_LOG_NUMBERS.sub("#", line)[:110]] += 1
    return found


def latency_row(values: list[float]) -> str:
    """p50 / p90 / p99 of latencies, with their maximum and count."""
    if not values:
        return "n/a (no samples)"
    return (
        " / ".join(fmt_ms(percentile(values, p)) for p in (50, 90, 99))
        + f"  (max {fmt_ms(max(values))}, n={len(values)})"
    )


def connect_rows(phase: ConnectPhase) -> list[tuple[str, str]]:
    """The rows of one connection phase in the connections table."""
    rate = phase.ok / phase.seconds if phase.seconds else math.nan
    failed = phase.wanted - phase.ok
    rows = [
        (
            f"{phase.kind}s connected",
            f"{phase.ok} of {phase.wanted} in {phase.seconds:.1f} s ({rate:.0f}/s)"
            + (f"; failed {failed}: {dict(phase.failures)}" if failed else ""),
        ),
        ("  handshake + snapshot p50/p90/p99", latency_row(phase.handshakes)),
        (
            "  server CPU while connecting",
            f"{phase.server_cpu_s:.1f} s"
            + (f" ({phase.server_cpu_s / phase.ok * 1000:.2f} ms each)" if phase.ok else ""),
        ),
        (
            "  server RSS",
            f"{mib(phase.rss_before)} -> {mib(phase.rss_after)}"
            + (f": {kib(phase.rss_per_connection)} per {phase.kind}" if phase.ok else ""),
        ),
    ]
    return rows


@dataclass
class Deliveries:
    """Worker results joined with the POSTs of the measured phase."""

    console_latencies: list[float]
    console_spread: list[float]  # per incident: last console - first console
    console_expected: int
    mdt_latencies: list[float]
    offered_at_intake: int
    offers_missing: int
    late_offers: int
    events: Counter[str]
    acks: Counter[str]
    errors: Counter[str]
    error_samples: dict[str, str]
    closed: Counter[str]
    pings_sent: int
    ping_failures: int
    connected: Counter[str]


def join_results(results: list[dict[str, Any]], posts: list[PostResult]) -> Deliveries:
    """The workers' results matched to the measured POSTs by incident id."""
    sent = {p.incident_id: p.sent for p in posts if p.incident_id is not None}
    offered_now = {p.incident_id for p in posts if p.status == "offered"}
    by_incident: dict[int, list[float]] = defaultdict(list)
    console_latencies: list[float] = []
    first_offer: dict[int, float] = {}
    events: Counter[str] = Counter()
    acks: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    closed: Counter[str] = Counter()
    connected: Counter[str] = Counter()
    samples: dict[str, str] = {}
    pings = ping_failures = 0
    for result in results:
        for incident_id, received in result["created"]:
            if incident_id in sent:
                console_latencies.append(received - sent[incident_id])
                by_incident[incident_id].append(received)
        for incident_id, _unit, received in result["offered"]:
            if incident_id in sent:
                first_offer[incident_id] = min(received, first_offer.get(incident_id, math.inf))
        events.update(result["events"])
        acks.update(result["acks"])
        errors.update(result["errors"])
        closed.update(result["closed"])
        connected.update(result["connected"])
        for key, detail in result["error_samples"].items():
            samples.setdefault(key, detail)
        pings += result["pings_sent"]
        ping_failures += result["ping_failures"]
    mdt_latencies = [first_offer[i] - sent[i] for i in offered_now if i in first_offer]
    return Deliveries(
        console_latencies=console_latencies,
        console_spread=[max(t) - min(t) for t in by_incident.values()],
        console_expected=len(sent) * connected["console"],
        mdt_latencies=mdt_latencies,
        offered_at_intake=len(offered_now),
        offers_missing=len(offered_now - first_offer.keys()),
        late_offers=len(first_offer.keys() - offered_now),
        events=events,
        acks=acks,
        errors=errors,
        error_samples=samples,
        closed=closed,
        pings_sent=pings,
        ping_failures=ping_failures,
        connected=connected,
    )


@dataclass
class InstanceFigures:
    """One instance's clients, pings and CPU (% of one core) in the two windows."""

    mdts: int
    consoles: int
    pings: int
    pings_only_pct: float
    steady_pct: float


def instance_rows(
    instances: list[InstanceFigures], ping_seconds: float, rate: float
) -> list[tuple[str, str]]:
    """Per instance and in all: CPU, and its marginal cost per ping and per incident
    (panics are spread evenly by the round robin)."""
    rows = []
    share = rate / len(instances)
    for n, fig in enumerate(instances):
        ping_rate = fig.pings / ping_seconds if ping_seconds > 0 else math.nan
        per_ping = fig.pings_only_pct / 100 / ping_rate * 1000 if ping_rate else math.nan
        per_incident = (fig.steady_pct - fig.pings_only_pct) / 100 / share * 1000
        rows.append(
            (
                f"instance {n}",
                f"{fig.mdts} MDTs, {fig.consoles} consoles; CPU {fig.pings_only_pct:.0f}% pings"
                f" only ({ping_rate:.0f}/s, {per_ping:.2f} ms each), {fig.steady_pct:.0f}% with"
                f" panics ({per_incident:.0f} ms per incident it took)",
            )
        )
    total_idle = sum(f.pings_only_pct for f in instances)
    total_busy = sum(f.steady_pct for f in instances)
    rows.append(
        ("all instances", f"CPU {total_idle:.0f}% pings only, {total_busy:.0f}% with panics")
    )
    return rows


def report(
    args: argparse.Namespace,
    *,
    n_workers: int,
    on_duty: int,
    rss_start: int,
    rss_connected: int,
    rss_end: int,
    rss_max: int,
    phases: list[ConnectPhase],
    pings_only: tuple[CpuSample, list[tuple[str, float]]],
    steady: tuple[CpuSample, list[tuple[str, float]]],
    posts: list[PostResult],
    warm_posts: list[PostResult],
    deliveries: Deliveries,
    ping_seconds: float,
    counts: dict[str, int],
    log_lines: Counter[str],
    backlog: list[int],
    fd_limit: int,
    instances: list[InstanceFigures],
    idle_pct: float,
    worker_cpu: tuple[float, float],
) -> None:
    """The run's tables on stdout: setup, connections and memory, CPU, delivery, log."""
    d = deliveries
    connected = sum(p.ok for p in phases)
    print_table(
        "Setup",
        [
            (
                "clients",
                f"{args.mdts} MDTs ({on_duty} on duty), {args.consoles} consoles,"
                f" {n_workers} worker processes",
            ),
            ("per-message deflate", "on" if args.deflate else "off"),
            ("descriptor limit", str(fd_limit)),
            (
                "steady phase",
                f"{len(posts)} panics at {args.rate:g}/s, pings every {args.ping_interval:g} s",
            ),
        ],
    )
    rows: list[tuple[str, str]] = []
    for phase in phases:
        rows.extend(connect_rows(phase))
    rows.append(
        (
            "server RSS",
            f"{mib(rss_start)} idle -> {mib(rss_connected)} with {connected} sockets"
            f" ({kib((rss_connected - rss_start) / connected) if connected else 'n/a'} per"
            f" socket) -> {mib(rss_end)} after the steady phase (max {mib(rss_max)})",
        )
    )
    print_table("Connections and memory", rows)

    ping_rate = d.pings_sent / ping_seconds if ping_seconds > 0 else math.nan
    rows = [
        *cpu_rows("pings only (% of one core)", *pings_only),
        *cpu_rows("pings + panics", *steady),
        *instance_rows(instances, ping_seconds, args.rate),
        (
            "load generator",
            f"client workers {worker_cpu[0]:.0f}% / {worker_cpu[1]:.0f}% of one core (pings"
            f" only / with panics) over {len(instances)} instance(s); panics sent at"
            f" {len(posts) / args.duration:.2f}/s (asked {args.rate:g}/s), pings at"
            f" {d.pings_sent / ping_seconds if ping_seconds > 0 else math.nan:.0f}/s (asked"
            f" {args.mdts / args.ping_interval:.0f}/s)",
        ),
        (
            "pings",
            f"{d.pings_sent} sent (~{ping_rate:.0f}/s), {d.ping_failures} on closed sockets;"
            f" {counts.pop('geo_index_units')} units in the GEO index,"
            f" {counts.pop('unit_track_rows')} track rows flushed",
        ),
        (
            "relay backlog (steady)",
            f"max {max(backlog, default=0)}, median {percentile(backlog, 50):.0f} events",
        ),
    ]
    # Marginal costs, from the two windows: the pings-only share over the ping rate,
    # and what the panics added over the panic rate. Rough on a shared machine, but
    # they say what one more MDT or one more incident per second would cost.
    server_idle = pings_only[0].by_role.get("server (python)", math.nan)
    server_busy = steady[0].by_role.get("server (python)", math.nan)
    if ping_rate > 0:
        rows.append(
            (
                "server CPU per ping",
                f"{server_idle / 100 / ping_rate * 1000:.2f} ms (pings, keepalives, flushes);"
                f" {(server_idle - idle_pct) / 100 / ping_rate * 1000:.2f} ms over the"
                f" {idle_pct:.1f}% the instances took connected but silent",
            )
        )
    if any(p.http_status == 202 for p in posts):
        rows.append(
            (
                "server CPU per incident",
                f"{(server_busy - server_idle) / 100 / args.rate * 1000:.0f} ms"
                f" (intake, MDT replies, and fan-out of its events to {connected} sockets)",
            )
        )
    print_table("CPU", rows)

    statuses = Counter(p.status or f"HTTP {p.http_status}" for p in posts)
    errors = [p.error for p in posts if p.error]
    rows = [
        ("panics (measured)", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))),
        ("warm-up panics", str(len(warm_posts))),
        (
            "POST -> 202 p50/p90/p99",
            latency_row([p.answered - p.sent for p in posts if p.http_status == 202]),
        ),
        ("POST -> console incident.created", latency_row(d.console_latencies)),
        (
            "  deliveries",
            f"{len(d.console_latencies)} of {d.console_expected}"
            f" ({d.connected['console']} consoles x {sum(p.incident_id is not None for p in posts)}"
            " incidents)",
        ),
        ("  first -> last console, per incident", latency_row(d.console_spread)),
        ("POST -> MDT assignment.offered", latency_row(d.mdt_latencies)),
        (
            "  offers",
            f"{len(d.mdt_latencies)} of {d.offered_at_intake} offered at intake delivered;"
            f" {d.offers_missing} missing; {d.late_offers} queued and offered later",
        ),
        ("MDT acks", ", ".join(f"{k}: {v}" for k, v in sorted(d.acks.items())) or "none"),
        ("MDT errors", ", ".join(f"{k}: {v}" for k, v in sorted(d.errors.items())) or "none"),
        (
            "closed by the server",
            ", ".join(f"code {k}: {v}" for k, v in sorted(d.closed.items())) or "none",
        ),
        ("events read", ", ".join(f"{k}: {v}" for k, v in sorted(d.events.items()))),
        ("incidents stored", ", ".join(f"{k[10:]}: {v}" for k, v in sorted(counts.items()))),
    ]
    if errors:
        rows.append(("first POST error", errors[0] or ""))
    print_table("Delivery (latency p50 / p90 / p99)", rows)
    for key, detail in d.error_samples.items():
        print(f"    {key}: {detail}")
    print_table(
        "Server log: warnings and errors",
        [(str(n), line) for line, n in log_lines.most_common(6)] or [("none", "")],
    )

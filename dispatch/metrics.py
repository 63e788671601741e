"""Prometheus metrics of one instance (scraped at /metrics; Prometheus sums instances).

Each app has its own registry, so several apps in one process (the tests) never
collide. Counters and histograms are observed inside the transaction that makes the
change: a transaction retried after a deadlock may count twice, which is rare and
harmless for rates and latencies.
"""

from __future__ import annotations

import bisect
import gc
import itertools
import math
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

# Seconds: dispatch within seconds is the goal, minutes the failure worth seeing.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The instance's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reports = Counter(
            "erss_reports",
            "Reports taken, by channel and whether they made a new incident or joined one.",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.incidents = Counter(
            "erss_incidents",
            "Incidents created, by channel of the first report and status after intake.",
            ["channel", "status"],
            registry=self.registry,
        )
        self.time_to_dispatch = Histogram(
            "erss_time_to_dispatch_seconds",
            "From incident created to a unit offered.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.time_to_accept = Histogram(
            "erss_time_to_accept_seconds",
            "From offer to the crew's accept.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.intake_group_size = Histogram(
            "erss_intake_group_size",
            "Reports written per intake transaction (group commit: 1 when idle).",
            buckets=(1, 2, 4, 8, 16, 32),
            registry=self.registry,
        )
        # Their ratio is how well live events are coalesced: messages per socket write.
        self.ws_messages = Counter(
            "erss_ws_live_messages",
            "Live messages (events, position batches) sent to console and MDT sockets.",
            registry=self.registry,
        )
        self.ws_writes = Counter(
            "erss_ws_live_writes",
            "Socket writes that carried them (several queued messages go in one write).",
            registry=self.registry,
        )
        self.gc_frozen = Gauge(
            "erss_gc_frozen_objects",
            "Objects the garbage collector's full passes skip (frozen after start-up).",
            registry=self.registry,
        )
        self.gc_frozen.set_function(gc.get_freeze_count)
        self.gc_pauses = GcPauses()
        self.registry.register(self.gc_pauses)
        self.offer_expiries = Counter(
            "erss_offer_expiries", "Offers that expired unanswered.", registry=self.registry
        )
        self.queue_length = Gauge(
            "erss_queue_length",
            "Open incidents waiting for a unit of some agency (as of this instance's last"
            " queue sweep).",
            registry=self.registry,
        )
        self.websocket_clients = Gauge(
            "erss_websocket_clients",
            "Websocket clients connected to this instance.",
            ["kind"],
            registry=self.registry,
        )
        self.outbox_lag = Gauge(
            "erss_outbox_lag_events",
            "Committed events not yet published to Redis (leader's view after each pass).",
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)

    def watch_gc(self) -> Callable[[], None]:
        """Time every garbage collection of this process into ``gc_pauses``; returns
        what stops it."""
        gc.callbacks.append(self.gc_pauses.observe)
        return lambda: gc.callbacks.remove(self.gc_pauses.observe)


class GcPauses(Collector):
    """``erss_gc_pause_seconds{generation}``: how long each garbage collection stopped
    the process (and so the event loop, and every socket of the instance).

    A full collection walks every tracked object (about 0.6 us each here, a second at
    8,000 sockets): the latency spikes a connection storm brings. Counted in plain
    lists, not a prometheus Histogram: the hook runs inside the collector, wherever an
    allocation set it off, and a histogram's lock held by the code it interrupted
    would never be released.
    """

    _BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    _BOUNDS = (*(repr(b) for b in _BUCKETS), "+Inf")

    def __init__(self) -> None:
        # Per generation: a count per bucket (the last is +Inf), and the sum.
        self._counts = [[0] * (len(self._BUCKETS) + 1) for _ in range(3)]
        self._sums = [0.0, 0.0, 0.0]
        self._started = 0.0

    def observe(self, phase: str, info: dict[str, int]) -> None:
        """The ``gc.callbacks`` hook (collections never overlap: one writer)."""
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self._counts[generation][bisect.bisect_left(self._BUCKETS, took)] += 1
        self._sums[generation] += took

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The histogram as it stands, for the registry."""
        family = HistogramMetricFamily(
            "erss_gc_pause_seconds",
            "Garbage collections (the event loop stopped meanwhile), by generation.",
            labels=["generation"],
        )
        for generation in range(3):
            cumulative = itertools.accumulate(self._counts[generation])
            family.add_metric(
                [str(generation)],
                list(zip(self._BOUNDS, (float(c) for c in cumulative), strict=True)),
                self._sums[generation],
            )
        yield family


class Every:
    """Says yes at most once per ``seconds``: for gauges that cost a query to measure,
    read by passes that run far more often than anyone scrapes."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._last = -math.inf

    def due(self) -> bool:
        """True (and counted) when ``seconds`` have passed since the last True."""
        now = time.monotonic()
        if now - self._last < self._seconds:
            return False
        self._last = now
        return True

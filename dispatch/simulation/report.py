"""Metrics of a simulated run, as a state ERSS publishes them: JSON and PNG charts.

Per zone and overall, over plan slots (one per agency a report needs): time to dispatch
(report to offer), time to accept (offer to accept), travel (accept to on scene),
response (report to on scene) as p50 / p90 / mean, the share on scene within the zone's
target (a slot never served counts as late), queue length over time, unit utilisation
(time not available, from offer to the end of the service on scene).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dispatch.simulation.offline import Response, SimResult
from dispatch.simulation.scenario import City, SimConfig


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _stats(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": _round(quantile(values, 0.5)),
        "p90": _round(quantile(values, 0.9)),
        "mean": _round(sum(values) / len(values)) if values else None,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _block(responses: Iterable[Response]) -> dict[str, Any]:
    rows = list(responses)
    dispatch = [r.offered_s - r.reported_s for r in rows if r.offered_s is not None]
    accept = [
        r.accepted_s - r.offered_s
        for r in rows
        if r.accepted_s is not None and r.offered_s is not None
    ]
    travel = [
        r.on_scene_s - r.accepted_s
        for r in rows
        if r.on_scene_s is not None and r.accepted_s is not None
    ]
    response = [r.response_s for r in rows if r.response_s is not None]
    within = sum(1 for r in rows if r.response_s is not None and r.response_s <= r.target_s)
    return {
        "responses": len(rows),
        "incidents": len({r.incident_id for r in rows}),
        "queued": sum(1 for r in rows if r.queued),
        "declined_offers": sum(len(r.declined_by) for r in rows),
        "unserved": sum(1 for r in rows if r.on_scene_s is None),
        "time_to_dispatch_s": _stats(dispatch),
        "time_to_accept_s": _stats(accept),
        "travel_s": _stats(travel),
        "response_s": _stats(response),
        "within_target": round(within / len(rows), 4) if rows else 1.0,
    }


def summarise(result: SimResult, config: SimConfig) -> dict[str, Any]:
    """The run's report: ``overall``, ``by_zone``, ``by_agency``, ``queue``, ``units``.

    ``overall.utilisation`` is the mean utilisation of each agency's units over the run.
    """
    overall = _block(result.responses)
    agencies: dict[str, list[float]] = {}
    for unit_id, busy in result.busy_s.items():
        agency = result.units[unit_id].agency
        agencies.setdefault(agency, []).append(busy / result.horizon_s)
    overall["utilisation"] = {a: round(sum(v) / len(v), 4) for a, v in sorted(agencies.items())}
    overall["target_min"] = config.target_min
    zones = sorted({r.zone_id for r in result.responses})
    return {
        "overall": overall,
        "by_zone": {z: _block(r for r in result.responses if r.zone_id == z) for z in zones},
        "by_agency": {
            a: _block(r for r in result.responses if r.agency == a)
            for a in sorted({r.agency for r in result.responses})
        },
        "queue": {
            "period_s": (result.queue[1][0] - result.queue[0][0]) if len(result.queue) > 1 else 0,
            "lengths": [q for _, q in result.queue],
            "max": max((q for _, q in result.queue), default=0),
        },
        "units": {
            uid: round(busy / result.horizon_s, 4) for uid, busy in sorted(result.busy_s.items())
        },
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    """The report as indented JSON (keys sorted, so equal runs give equal files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", "utf-8")


def write_charts(
    result: SimResult, report: dict[str, Any], city: City, config: SimConfig, folder: Path
) -> list[Path]:
    """response_times.png (distribution, target marked), zones_within_target.png (map),
    queue.png (waiting slots over time). Needs matplotlib (the ``sim`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon as MplPolygon

    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    minutes = [r.response_s / 60.0 for r in result.responses if r.response_s is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(minutes, bins=60, color="#4477aa")
    ax.axvline(config.target_min, color="#cc3311", label=f"target {config.target_min:g} min")
    ax.set_xlabel("response time, report to on scene (min)")
    ax.set_ylabel("responses")
    share = report["overall"]["within_target"]
    ax.set_title(f"Response times: {share:.0%} within target")
    # A fixed corner: "best" searches the data for a free spot, slow on a long day (and
    # matplotlib warns so, which the test suite treats as an error).
    ax.legend(loc="upper right")
    fig.tight_layout()
    paths.append(folder / "response_times.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 7))
    cmap = plt.get_cmap("RdYlGn")
    for zone in city.zones:
        block = report["by_zone"].get(zone.id)
        value = block["within_target"] if block else None
        geoms = getattr(zone.geometry, "geoms", [zone.geometry])
        for geom in geoms:
            colour = cmap(value) if value is not None else "#dddddd"
            ax.add_patch(
                MplPolygon(list(geom.exterior.coords), facecolor=colour, edgecolor="#333333")
            )
        c = zone.geometry.representative_point()
        label = f"{value:.0%}" if value is not None else "-"
        ax.annotate(label, (c.x, c.y), ha="center", va="center", fontsize=7)
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.set_title("Share of responses within target, per zone")
    fig.colorbar(plt.cm.ScalarMappable(cmap=cmap), ax=ax, shrink=0.7)
    fig.tight_layout()
    paths.append(folder / "zones_within_target.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.step([t / 3600.0 for t, _ in result.queue], [q for _, q in result.queue], where="post")
    ax.set_xlabel("hour of day")
    ax.set_ylabel("slots waiting")
    ax.set_title("Queue length")
    fig.tight_layout()
    paths.append(folder / "queue.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths

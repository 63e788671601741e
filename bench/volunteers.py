"""Time to first help on scene for women and children in distress, with and without
SHOUT volunteers, over simulated days of the demo city (docs/benchmarks.md).

    python -m bench.volunteers --seeds 10 --per-zone 0 3 6 12

The police run is the offline simulator's (closest_idle); volunteers are alerted by the
live rule (dispatch/volunteers/decide.py) with config/volunteers.json's policy, and
behave as dispatch/simulation/volunteers.py's VolunteerModel says.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

from dispatch.incident_types import load_incident_types
from dispatch.simulation.offline import OfflineSimulator
from dispatch.simulation.policies import policy_named
from dispatch.simulation.scenario import arrivals, demo_city, load_sim_config
from dispatch.simulation.volunteers import (
    VolunteerModel,
    overlay,
    place_volunteers,
    summarise_help,
)
from dispatch.volunteers.policy import load_policy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--per-zone", type=int, nargs="+", default=[0, 3, 6, 12])
    parser.add_argument("--available-share", type=float, default=None)
    parser.add_argument("--accept-share", type=float, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = load_sim_config()
    city = demo_city()
    policy = load_policy(None, load_incident_types())
    model = VolunteerModel()
    for key in ("available_share", "accept_share"):
        if getattr(args, key) is not None:
            model = dataclasses.replace(model, **{key: getattr(args, key)})
    started = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        day = arrivals(city, config, seed=seed)
        runs.append(
            (seed, day, OfflineSimulator(city, config, policy_named("closest_idle")).run(day))
        )
    rows = {}
    for per_zone in args.per_zone:
        placed = place_volunteers(city, per_zone)
        per_seed = [
            summarise_help(overlay(day, result, config, placed, policy, model, seed=seed))
            for seed, day, result in runs
        ]
        rows[per_zone] = {key: statistics.fmean(s[key] for s in per_seed) for key in per_seed[0]}
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"model": dataclasses.asdict(model), "rows": rows}, indent=2))
        return
    print(
        f"{args.seeds} simulated days, demo city, {sorted(policy.incident_types)} within"
        f" {policy.radius_m:.0f} m, up to {policy.max_per_incident} alerted; {model}"
    )
    print(
        "volunteers  incidents/day  police median/p90 min"
        "  first help median/p90 min  volunteer first"
    )
    for per_zone, row in rows.items():
        print(
            f"{per_zone * len(city.zone_ids):>10}  {row['incidents']:>13.1f}"
            f"  {row['police_median_min']:>9.1f} / {row['police_p90_min']:<9.1f}"
            f"  {row['with_volunteers_median_min']:>13.1f}"
            f" / {row['with_volunteers_p90_min']:<10.1f}"
            f"  {row['volunteer_first_share']:>14.0%}"
        )
    print(f"({elapsed:.1f} s)")


if __name__ == "__main__":
    main()

"""Compare dispatch policies on the demo city with the offline simulator.

    .venv/bin/python bench/policies.py --seeds 20 --loads 1.0 3.4

Each row is a dispatch policy (which unit goes) with a standby rule (where a freed unit
waits: its patrol base, or the coverage post of dispatch/posts.py). For each load and
seed, every row serves the same day of emergencies (common random numbers); reports the
share of responses on scene within target, late share, mean response time, police
utilisation, each as mean and 95 % confidence interval over seeds, and the paired
relative change against closest-idle (with its CI).

Claims are made on seeds not used for tuning: ``--seeds`` takes a count (seeds 0..N-1,
the ones the policy parameters were tuned on) or the seeds themselves (``--seeds
1000-1019`` or ``--seeds 7 11 13``). And the coverage rules can be given a demand model
that is not the generator's own: ``--demand-noise 0.3`` multiplies each zone's rate, as
the policies believe it, by a log-normal factor (sigma 0.3, seeded by
``--demand-seed``), while the days are still drawn from the true rates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import statistics
import time
from typing import Any

from dispatch.posts import standby_named
from dispatch.simulation.offline import OfflineSimulator
from dispatch.simulation.policies import policy_named
from dispatch.simulation.report import summarise
from dispatch.simulation.scenario import arrivals, demo_city, load_sim_config


def ci95(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval (t ~ 2.09 for 20 seeds)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    t = {5: 2.78, 10: 2.26, 20: 2.09, 30: 2.05}.get(len(values), 1.96)
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def seeds_of(words: list[str]) -> list[int]:
    """``["20"]`` is seeds 0..19; ``["1000-1019"]`` a range; several words, those seeds."""
    if len(words) == 1 and "-" not in words[0]:
        return list(range(int(words[0])))
    seeds: list[int] = []
    for word in words:
        low, _, high = word.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def perturbed(rates: dict[str, float], sigma: float, seed: int) -> dict[str, float]:
    """Each rate times a log-normal factor (median 1): a demand model estimated from
    another day, not the generator's own."""
    rng = random.Random(seed)
    return {zone: rate * math.exp(rng.gauss(0.0, sigma)) for zone, rate in sorted(rates.items())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", nargs="+", default=["20"], help="a count, or the seeds")
    parser.add_argument("--demand-noise", type=float, default=0.0)
    parser.add_argument("--demand-seed", type=int, default=1)
    parser.add_argument("--loads", type=float, nargs="+", default=[1.0, 3.4])
    parser.add_argument("--time-weight", type=float, default=None)
    parser.add_argument("--busy-fraction", type=float, default=None)
    parser.add_argument("--reach-s", type=float, default=None)
    parser.add_argument(
        "--decline-share", type=float, default=None, help="share of offers crews decline"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = load_sim_config()
    if args.decline_share is not None:
        config = dataclasses.replace(config, decline_share=args.decline_share)
    city = demo_city()
    params = dict(config.policy)
    for key in ("time_weight", "busy_fraction", "reach_s"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    seeds = seeds_of(args.seeds)
    rates = dict(config.zone_rates)
    default_rate = config.rate_default
    if args.demand_noise:
        rates = perturbed(
            {**{z.id: default_rate for z in city.zones}, **rates},
            args.demand_noise,
            args.demand_seed,
        )
    demand = {"rates": rates, "default_rate": default_rate, "params": params}
    closest = policy_named("closest_idle")
    coverage = policy_named("coverage", zones=city.zones, **demand)  # type: ignore[arg-type]
    posts = standby_named(
        "coverage",
        zones=city.zones,
        model=config.travel_model(),
        **demand,  # type: ignore[arg-type]
    )
    policies = {
        "closest_idle": (closest, None),
        "coverage": (coverage, None),
        "closest+posts": (closest, posts),
        "coverage+posts": (coverage, posts),
    }
    out: dict[str, Any] = {
        "params": params,
        "seeds": seeds,
        "demand_noise": args.demand_noise,
        "demand_seed": args.demand_seed,
        "loads": {},
    }
    for load in args.loads:
        per: dict[str, dict[str, list[float]]] = {
            p: {"within": [], "late": [], "mean_min": [], "util": []} for p in policies
        }
        started = time.perf_counter()
        for seed in seeds:
            day = arrivals(city, config, seed=seed, load=load)
            for name, (policy, standby) in policies.items():
                result = OfflineSimulator(city, config, policy, posts=standby).run(day)
                summary = summarise(result, config)["overall"]
                per[name]["within"].append(summary["within_target"])
                per[name]["late"].append(1.0 - summary["within_target"])
                per[name]["mean_min"].append(summary["response_s"]["mean"] / 60.0)
                per[name]["util"].append(summary["utilisation"]["police"])
        elapsed = time.perf_counter() - started
        rows: dict[str, Any] = {}
        base = per["closest_idle"]
        for name, metrics in per.items():
            row = {k: ci95(v) for k, v in metrics.items()}
            late_change = [
                (a - b) / b for a, b in zip(metrics["late"], base["late"], strict=True) if b
            ]
            mean_change = [
                (a - b) / b for a, b in zip(metrics["mean_min"], base["mean_min"], strict=True)
            ]
            row["late_change"] = ci95(late_change)
            row["mean_change"] = ci95(mean_change)
            rows[name] = row
        out["loads"][str(load)] = {"rows": rows, "seconds": elapsed}
        if not args.json:
            print(
                f"load {load}: {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}) x {len(policies)}"
                f" policies, demand noise {args.demand_noise}, {elapsed:.1f} s"
            )
            for name, row in rows.items():
                print(
                    f"  {name:15s} within {row['within'][0]:.3f}±{row['within'][1]:.3f}"
                    f"  late {row['late'][0]:.3f}±{row['late'][1]:.3f}"
                    f" ({row['late_change'][0]:+.1%}±{row['late_change'][1]:.1%})"
                    f"  mean {row['mean_min'][0]:.2f}±{row['mean_min'][1]:.2f} min"
                    f" ({row['mean_change'][0]:+.1%}±{row['mean_change'][1]:.1%})"
                    f"  police util {row['util'][0]:.2f}"
                )
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

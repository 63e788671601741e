"""The city simulator: repeatable, faithful to its rates, and to the engine's choice."""

from __future__ import annotations

import math

import pytest
from geopy.distance import geodesic

from dispatch.core.facts import IncidentFacts
from dispatch.engine import Need, TravelModel, UnitSnapshot, closest_idle
from dispatch.errors import ConfigurationError
from dispatch.offers import Dispatcher
from dispatch.simulation.offline import OfflineSimulator
from dispatch.simulation.policies import CoverageAware, policy_named
from dispatch.simulation.report import summarise
from dispatch.simulation.scenario import (
    SimConfig,
    arrivals,
    demo_city,
    expected_arrivals,
    load_sim_config,
)
from geo.points import GeoPoint
from tests.conftest import LiveServer
from tests.test_walking_skeleton import panic, zone_point

CITY = demo_city()
CONFIG = load_sim_config()


@pytest.mark.parametrize("name", ["closest_idle", "coverage"])
def test_same_seed_same_report(name: str) -> None:
    policy = policy_named(name, zones=CITY.zones)
    reports = [
        summarise(
            OfflineSimulator(CITY, CONFIG, policy).run(arrivals(CITY, CONFIG, seed=7, load=3.0)),
            CONFIG,
        )
        for _ in range(2)
    ]
    assert reports[0] == reports[1]
    other = OfflineSimulator(CITY, CONFIG, policy).run(arrivals(CITY, CONFIG, seed=8, load=3.0))
    assert summarise(other, CONFIG) != reports[0]


def test_arrival_counts_match_the_rates() -> None:
    """Over 40 seeded days the total is Poisson with the configured mean: within 4 sigma,
    overall and per zone; and the hourly profile shows (evening peak over the night)."""
    days = [arrivals(CITY, CONFIG, seed=s, load=1.0) for s in range(40)]
    mean = expected_arrivals(CITY, CONFIG, hours=24, load=1.0) * len(days)
    total = sum(len(d) for d in days)
    assert abs(total - mean) < 4 * math.sqrt(mean)
    for zone in CITY.zone_ids:
        zone_mean = CONFIG.rate_of(zone) * 24 * len(days)
        count = sum(1 for d in days for a in d if a.zone_id == zone)
        assert abs(count - zone_mean) < 4 * math.sqrt(zone_mean), zone
    night = sum(1 for d in days for a in d if 2 <= a.t_s / 3600 < 4)
    evening = sum(1 for d in days for a in d if 18 <= a.t_s / 3600 < 20)
    assert evening > 3 * night
    kinds = {a.type for d in days for a in d}
    assert kinds == set(CONFIG.type_mix)


def test_a_busy_city_queues_and_a_quiet_one_does_not() -> None:
    quiet = summarise(
        OfflineSimulator(CITY, CONFIG, closest_idle).run(arrivals(CITY, CONFIG, seed=1, load=0.5)),
        CONFIG,
    )
    busy = summarise(
        OfflineSimulator(CITY, CONFIG, closest_idle).run(arrivals(CITY, CONFIG, seed=1, load=4.0)),
        CONFIG,
    )
    assert quiet["queue"]["max"] <= 2
    assert busy["queue"]["max"] > 10
    assert busy["overall"]["utilisation"]["police"] > 0.5
    assert busy["overall"]["within_target"] < quiet["overall"]["within_target"]
    assert busy["overall"]["unserved"] == 0


def test_coverage_policy_only_ranks_what_closest_idle_ranks() -> None:
    policy = policy_named("coverage", zones=CITY.zones)
    assert isinstance(policy, CoverageAware)
    units = [UnitSnapshot(u.id, u.agency, u.zone_id, u.base, u.capabilities) for u in CITY.units]
    point = zone_point("capital")
    need = Need(point, "capital", frozenset(CITY.zones.neighbours("capital")), "police")
    ranked = policy(need, units, CONFIG.travel_model())
    assert {c.unit_id for c in ranked} == {
        c.unit_id for c in closest_idle(need, units, CONFIG.travel_model())
    }
    woman = Need(point, "capital", need.neighbour_zone_ids, "police", frozenset({"woman_officer"}))
    assert all(c.unit_id.endswith("pcr-1") for c in policy(woman, units, CONFIG.travel_model()))


async def test_closest_idle_offline_picks_the_unit_the_live_server_picks(
    live: LiveServer,
) -> None:
    """Scatter the police fleet 2-4 km around a point, make some busy, put one free unit
    of the point's own zone 150 m from it, post a panic: the offline policy call and the
    live server both choose that unit, which is known by construction, not computed."""
    import random

    rng = random.Random(42)
    target = zone_point("sahidnagar")
    rows = await live.db.fetch("SELECT id, agency, zone_id, capabilities FROM units")
    near_id = next(
        r["id"]
        for r in sorted(rows, key=lambda r: r["id"])
        if r["agency"] == "police" and r["zone_id"] == "sahidnagar" and not r["capabilities"]
    )
    snapshots: list[UnitSnapshot] = []
    for row in rows:
        near = row["id"] == near_id
        metres = 150 if near else rng.uniform(2_000, 4_000)
        bearing = rng.uniform(0, 360)
        at = geodesic(meters=metres).destination((target.lat, target.lon), bearing=bearing)
        status = "available" if near or rng.random() < 0.6 else "en_route"
        await live.db.execute(
            "UPDATE units SET lat = $2, lon = $3, status = $4, position_at = now() WHERE id = $1",
            row["id"],
            at.latitude,
            at.longitude,
            status,
        )
        if status == "available":
            snapshots.append(
                UnitSnapshot(
                    row["id"],
                    row["agency"],
                    row["zone_id"],
                    GeoPoint(lat=at.latitude, lon=at.longitude),
                    frozenset(row["capabilities"]),
                )
            )
    # The live unit index learns positions from the outbox; the Dispatcher re-reads
    # PostgreSQL, and falls back to a full scan, so the DB state is what counts.
    dispatcher = live.services.dispatcher
    need = dispatcher.need_of(_facts(dispatcher, target, "panic"), "police")
    offline = OfflineSimulator(CITY, CONFIG, closest_idle, model=_travel(live))
    assert offline.policy(need, snapshots, offline.model)[0].unit_id == near_id
    answer = (await live.post_panic(panic(target, trigger="sim-1"))).json()
    unit = await live.db.fetchval(
        "SELECT unit_id FROM assignments WHERE incident_id = $1", answer["incident_id"]
    )
    assert unit == near_id


def _facts(dispatcher: Dispatcher, point: GeoPoint, kind: str) -> IncidentFacts:
    zone = dispatcher.locate(point)
    return IncidentFacts(0, dispatcher.incident_type(kind), point, zone.id if zone else None)


def _travel(live: LiveServer) -> TravelModel:
    return live.services.dispatcher.travel


def test_report_charts_are_written(tmp_path: pytest.TempPathFactory) -> None:
    """The published report: JSON and the three PNG charts."""
    from pathlib import Path

    from dispatch.simulation.report import write_charts, write_json

    out = Path(str(tmp_path))
    policy = policy_named("closest_idle", zones=CITY.zones)
    result = OfflineSimulator(CITY, CONFIG, policy).run(arrivals(CITY, CONFIG, seed=3, load=1.0))
    report = summarise(result, CONFIG)
    write_json(report, out / "report.json")
    write_charts(result, report, CITY, CONFIG, out)
    for name in ("report.json", "response_times.png", "zones_within_target.png", "queue.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "response_times.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_erss_simulate_offline_writes_the_report(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """`erss simulate --standby coverage`: a seeded run, its report, and its summary line;
    an unknown policy is refused before anything runs."""
    import json
    from pathlib import Path

    from dispatch.cli import main

    out = Path(str(tmp_path)) / "run"
    args = ["simulate", "--hours", "3", "--load", "2", "--seed", "4", "--no-charts"]
    assert main([*args, "--standby", "coverage", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["overall"]["incidents"] > 0
    assert report["overall"]["unserved"] == 0
    assert f"{report['overall']['incidents']} incidents" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main([*args, "--standby", "everywhere", "--out", str(out / "never")])
    assert refused.value.code == 2
    assert "invalid choice: 'everywhere'" in capsys.readouterr().err
    assert not (out / "never").exists()


def test_erss_simulate_refuses_zone_names_the_city_lacks(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in config/simulation.json's zones is named, not silently defaulted."""
    import json
    from importlib import resources
    from pathlib import Path

    from dispatch.cli import main

    raw = json.loads(resources.files("config").joinpath("simulation.json").read_text("utf-8"))
    raw["arrivals_per_hour"]["zones"]["captial"] = 2.0
    path = Path(str(tmp_path)) / "sim.json"
    path.write_text(json.dumps(raw), "utf-8")
    out = Path(str(tmp_path)) / "run"
    assert main(["simulate", "--config", str(path), "--out", str(out), "--no-charts"]) == 2
    assert "captial" in capsys.readouterr().err
    assert not out.exists()
    assert CONFIG.unknown_zones(CITY.zone_ids) == []


def test_declined_offers_go_to_the_next_unit_the_same_for_every_policy() -> None:
    """With crews declining a share of offers, a declined slot is never offered to the
    same unit again, every emergency is still served, the refusals are the same draws
    whatever the policy, and answering takes longer than with no refusals."""
    import dataclasses

    declining = dataclasses.replace(CONFIG, decline_share=0.3)
    day = arrivals(CITY, CONFIG, seed=6, load=2.0)
    runs = {
        name: OfflineSimulator(CITY, declining, policy_named(name, zones=CITY.zones)).run(day)
        for name in ("closest_idle", "coverage")
    }
    for result in runs.values():
        for response in result.responses:
            assert response.unit_id not in response.declined_by
            assert response.on_scene_s is not None
    # The first offer of a slot is declined or not by the same draw under both policies.
    pairs = [
        (a, b)
        for a, b in zip(runs["closest_idle"].responses, runs["coverage"].responses, strict=True)
        if not a.queued and not b.queued
    ]
    assert [bool(a.declined_by) for a, _ in pairs] == [bool(b.declined_by) for _, b in pairs]
    declined = sum(bool(a.declined_by) for a, _ in pairs)
    assert 0.2 * len(pairs) < declined < 0.4 * len(pairs)
    report = summarise(runs["closest_idle"], declining)["overall"]
    assert report["declined_offers"] >= declined
    plain = summarise(OfflineSimulator(CITY, CONFIG, closest_idle).run(day), CONFIG)["overall"]
    assert plain["declined_offers"] == 0
    assert report["time_to_dispatch_s"]["mean"] > plain["time_to_dispatch_s"]["mean"]
    with pytest.raises(ConfigurationError, match="decline_share"):
        SimConfig.from_dict({**_raw_config(), "decline_share": 1.0})


def _raw_config() -> dict[str, object]:
    import json
    from importlib import resources

    raw: dict[str, object] = json.loads(
        resources.files("config").joinpath("simulation.json").read_text("utf-8")
    )
    return raw

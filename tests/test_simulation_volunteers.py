"""Volunteers in the offline simulator: the live rule decides who is alerted, and they
can only bring first help earlier, never later; out of reach, they change nothing."""

from __future__ import annotations

import pytest

from dispatch.incident_types import load_incident_types
from dispatch.simulation.offline import OfflineSimulator, SimResult
from dispatch.simulation.policies import policy_named
from dispatch.simulation.scenario import Arrival, SimConfig, arrivals, demo_city, load_sim_config
from dispatch.simulation.volunteers import (
    VolunteerModel,
    overlay,
    place_volunteers,
    summarise_help,
)
from dispatch.volunteers.policy import AlertPolicy, load_policy
from geo.points import GeoPoint


@pytest.fixture(scope="module")
def day() -> tuple[list[Arrival], SimResult, SimConfig, AlertPolicy]:
    config = load_sim_config()
    city = demo_city()
    emergencies = arrivals(city, config, seed=7)
    result = OfflineSimulator(city, config, policy_named("closest_idle")).run(emergencies)
    return emergencies, result, config, load_policy(None, load_incident_types())


def test_volunteers_bring_first_help_earlier_never_later(
    day: tuple[list[Arrival], SimResult, SimConfig, AlertPolicy],
) -> None:
    emergencies, result, config, policy = day
    placed = place_volunteers(demo_city(), 12)
    helps = overlay(emergencies, result, config, placed, policy, VolunteerModel())
    assert helps, "the day has women in distress and panics"
    assert {h.type for h in helps} <= policy.incident_types
    for h in helps:
        if h.police_s is not None and h.first_s is not None:
            assert h.first_s <= h.police_s
    summary = summarise_help(helps)
    assert summary["volunteer_first_share"] > 0
    assert summary["with_volunteers_median_min"] <= summary["police_median_min"]
    alone = summarise_help(overlay(emergencies, result, config, {}, policy, VolunteerModel()))
    assert alone["volunteer_first_share"] == 0
    assert alone["with_volunteers_median_min"] == alone["police_median_min"]


def test_volunteers_out_of_reach_are_never_alerted(
    day: tuple[list[Arrival], SimResult, SimConfig, AlertPolicy],
) -> None:
    emergencies, result, config, policy = day
    far = {"far-away": GeoPoint(lat=20.40, lon=85.60)}  # beyond 2 km of the demo city
    certain = VolunteerModel(available_share=1.0, accept_share=1.0)
    helps = overlay(emergencies, result, config, far, policy, certain)
    assert all(h.alerted == 0 and h.volunteer_s is None for h in helps)

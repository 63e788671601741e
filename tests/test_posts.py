"""Standby posts: the coverage rule sends a freed unit where its zone is least covered."""

from __future__ import annotations

import numpy as np
import pytest

from dispatch.engine import closest_idle
from dispatch.errors import ConfigurationError
from dispatch.posts import CoveragePosts, standby_named
from dispatch.simulation.offline import OfflineSimulator
from dispatch.simulation.policies import Demand, haversine_m
from dispatch.simulation.report import summarise
from dispatch.simulation.scenario import arrivals, demo_city, load_sim_config
from geo.points import GeoPoint

CITY = demo_city()
CONFIG = load_sim_config()
MODEL = CONFIG.travel_model()

# One zone 'z' along a line of longitude: demand at its west end (heavy), its east end,
# and far to the east (another zone, never a candidate for 'z').
WEST, EAST, FAR = (
    GeoPoint(lat=20.0, lon=85.70),
    GeoPoint(lat=20.0, lon=85.76),
    GeoPoint(lat=20.0, lon=85.90),
)
LINE = Demand(
    lat=np.array([WEST.lat, EAST.lat, FAR.lat]),
    lon=np.array([WEST.lon, EAST.lon, FAR.lon]),
    weight=np.array([3.0, 1.0, 5.0]),
    zone=np.array(["z", "z", "y"]),
)


def test_a_freed_unit_goes_where_no_other_idle_unit_covers() -> None:
    posts = CoveragePosts(LINE, MODEL)
    # Alone, it covers the heavier end.
    alone = posts.choose("z", EAST, [])
    assert alone is not None
    assert alone.point == WEST
    assert alone.zone_id == "z"
    # With another idle unit already at the west end, the east end adds more (3 * q^1 < 1).
    posts = CoveragePosts(LINE, MODEL, busy_fraction=0.2)
    spread = posts.choose("z", WEST, [WEST])
    assert spread is not None
    assert spread.point == EAST
    assert spread.gain == pytest.approx(1.0 * 0.8)
    # The far demand of another zone never draws it out of its jurisdiction.
    crowded = posts.choose("z", WEST, [WEST, EAST])
    assert crowded is not None
    assert crowded.point == WEST
    assert posts.choose("nowhere", WEST, []) is None


def test_standby_policies_by_name() -> None:
    assert standby_named("patrol", zones=CITY.zones, model=MODEL) is None
    assert isinstance(standby_named("coverage", zones=CITY.zones, model=MODEL), CoveragePosts)
    with pytest.raises(ConfigurationError, match="unknown standby policy 'everywhere'"):
        standby_named("everywhere", zones=CITY.zones, model=MODEL)
    with pytest.raises(ConfigurationError, match="busy_fraction"):
        CoveragePosts(LINE, MODEL, busy_fraction=1.0)


def test_offline_posts_keep_units_home_and_repeat() -> None:
    """Freed units wait at posts of their own zone; the same seed gives the same day."""
    posts = standby_named("coverage", zones=CITY.zones, model=MODEL)
    assert posts is not None
    day = arrivals(CITY, CONFIG, seed=3, load=2.0)
    runs = [OfflineSimulator(CITY, CONFIG, closest_idle, posts=posts) for _ in range(2)]
    results = [sim.run(day) for sim in runs]
    assert summarise(results[0], CONFIG) == summarise(results[1], CONFIG)
    plain = OfflineSimulator(CITY, CONFIG, closest_idle).run(day)
    assert summarise(plain, CONFIG) != summarise(results[0], CONFIG)
    chosen = [posts.choose(u.zone_id, u.base, []) for u in CITY.units]
    for unit, post in zip(CITY.units, chosen, strict=True):
        assert post is not None
        assert CITY.zones.zone_of(post.point, tolerance_m=0.0).id == unit.zone_id  # type: ignore[union-attr]


def test_choice_equals_the_unfiltered_rule_with_units_far_and_near() -> None:
    """``choose`` cuts other units to the zone's surroundings first; a unit between one
    and two reaches from a post still covers demand the post covers, so it must count.
    Checked against the rule computed over every demand point and every unit."""
    posts = standby_named("coverage", zones=CITY.zones, model=MODEL)
    assert posts is not None
    d = posts.demand
    rng = np.random.default_rng(11)
    for zone_id in ("capital", "lingaraj", "chandaka"):
        mine = np.flatnonzero(d.zone == zone_id)
        area = posts.area(zone_id)
        assert area is not None
        # Units scattered over and beyond the area, some just inside its edge.
        lat = rng.uniform(area[0] - 0.02, area[2] + 0.02, 60)
        lon = rng.uniform(area[1] - 0.02, area[3] + 0.02, 60)
        others = [GeoPoint(lat=float(a), lon=float(b)) for a, b in zip(lat, lon, strict=True)]
        here = GeoPoint(lat=float(d.lat[mine[0]]), lon=float(d.lon[mine[0]]))
        chosen = posts.choose(zone_id, here, others)
        assert chosen is not None
        covered = haversine_m(lat[:, None], lon[:, None], d.lat[None, :], d.lon[None, :])
        k = (covered <= posts.reach_m).sum(axis=0)
        marginal = d.weight * 0.5 * np.power(0.5, k)
        reach = haversine_m(d.lat[mine][:, None], d.lon[mine][:, None], d.lat, d.lon)
        gains = (reach <= posts.reach_m).astype(float) @ marginal
        assert chosen.gain == pytest.approx(gains.max())
        best = mine[np.flatnonzero(np.isclose(gains, gains.max()))]
        assert (chosen.point.lat, chosen.point.lon) in {
            (float(d.lat[i]), float(d.lon[i])) for i in best
        }
        # Some unit lies between one and two reaches of a post: the cut must keep it.
        to_posts = haversine_m(
            lat[:, None], lon[:, None], d.lat[mine][None, :], d.lon[mine][None, :]
        )
        nearest = to_posts.min(axis=1)
        assert ((nearest > posts.reach_m) & (nearest < 2 * posts.reach_m)).any()

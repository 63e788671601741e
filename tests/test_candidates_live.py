"""Candidate choice on the running server: capabilities and stale positions."""

from __future__ import annotations

from tests.conftest import LiveServer
from tests.test_walking_skeleton import panic, zone_point


async def test_woman_in_distress_gets_a_unit_with_a_woman_officer(live: LiveServer) -> None:
    point = zone_point("khandagiri")
    # The ordinary PCR stands right at the caller; the one with a woman officer does not.
    await live.db.execute(
        "UPDATE units SET lat = $1, lon = $2 WHERE id = 'khandagiri-pcr-2'", point.lat, point.lon
    )
    answer = (await live.post_panic(panic(point, category="women_safety"))).json()
    unit = await live.db.fetchval(
        "SELECT unit_id FROM assignments WHERE incident_id = $1", answer["incident_id"]
    )
    assert unit == "khandagiri-pcr-1"
    caps = await live.db.fetchval("SELECT capabilities FROM units WHERE id = $1", unit)
    assert "woman_officer" in caps


async def test_a_unit_silent_for_too_long_is_not_offered(live: LiveServer) -> None:
    """No ping for longer than position_stale_s (600 s): the position is not trusted."""
    point = zone_point("badagada")
    await live.db.execute(
        "UPDATE units SET lat = $1, lon = $2, position_at = now() - interval '11 minutes'"
        " WHERE id = 'badagada-pcr-1'",
        point.lat,
        point.lon,
    )
    answer = (await live.post_panic(panic(point))).json()
    unit = await live.db.fetchval(
        "SELECT unit_id FROM assignments WHERE incident_id = $1", answer["incident_id"]
    )
    assert unit != "badagada-pcr-1"

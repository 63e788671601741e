"""The coverage policy's hold: a low-priority incident that no free unit can reach in
time waits a while for one that can, instead of drawing a distant unit away."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dispatch.engine import Need, UnitSnapshot
from dispatch.settings import Settings
from dispatch.simulation.offline import OfflineSimulator
from dispatch.simulation.policies import CoverageAware, policy_named
from dispatch.simulation.scenario import arrivals, demo_city, load_sim_config
from tests.conftest import LiveServer, event_of, receive_until

# The browser fixtures (a pytest fixture is found by its name in the module).
from tests.test_console_browser import chromium, log_in, page, playwright_api  # noqa: F401
from tests.test_walking_skeleton import panic, zone_point

CITY = demo_city()
CONFIG = load_sim_config()


def _coverage(**params: float) -> CoverageAware:
    policy = policy_named(
        "coverage", zones=CITY.zones, rates=CONFIG.zone_rates, params={**CONFIG.policy, **params}
    )
    assert isinstance(policy, CoverageAware)
    return policy


def test_only_low_priority_needs_are_held_and_only_for_a_while() -> None:
    policy = _coverage(hold_priority=3, hold_s=600.0)
    point = zone_point("infocity")
    # A neighbouring zone's PCRs: 4-7 km away, beyond the 480 s reach, within the radius.
    far = [u for u in CITY.units if u.agency == "police" and u.zone_id == "mancheswar"]
    units = [UnitSnapshot(u.id, u.agency, u.zone_id, u.base, u.capabilities) for u in far]
    near_zones = frozenset(CITY.zones.neighbours("infocity"))
    model = CONFIG.travel_model()

    def need(priority: int, waited_s: float) -> Need:
        return Need(point, "infocity", near_zones, "police", priority=priority, waited_s=waited_s)

    assert policy.holds(need(3, 0.0))
    assert policy.holds(need(4, 599.0))
    assert not policy.holds(need(2, 0.0))
    assert not policy.holds(need(3, 600.0))
    # Held: none of the distant units is offered; urgent or after the hold: the best.
    assert policy(need(3, 0.0), units, model) == []
    assert policy(need(1, 0.0), units, model)
    assert policy(need(3, 601.0), units, model)
    assert not _coverage(hold_priority=0).holds(need(4, 0.0))
    # The time left to the target decides what is "in time" (4-7 km at 21 km/h: 12-19
    # min): with 15 min left the nearer one is offered, with 8 min neither.
    roomy = Need(point, "infocity", near_zones, "police", priority=3, budget_s=900.0)
    tight = Need(point, "infocity", near_zones, "police", priority=3, budget_s=480.0)
    assert [c.unit_id for c in policy(roomy, units, model)] == ["mancheswar-pcr-1"]
    assert policy(tight, units, model) == []


def test_offline_held_slots_are_all_served() -> None:
    """Held slots wait in the queue and every one is served, by a unit in time or once
    the hold ends; urgent slots are never held."""
    day = arrivals(CITY, CONFIG, seed=2, load=3.0)
    result = OfflineSimulator(CITY, CONFIG, _coverage()).run(day)
    held = [r for r in result.responses if r.held]
    assert held
    assert all(r.priority >= 3 for r in held)
    assert all(r.on_scene_s is not None for r in result.responses)
    # A held slot got a unit that could arrive in time, or the best one once the hold
    # ended: at hold_s (some exactly then), or when no time was left to the target.
    hold_s = _coverage().hold_s
    at_end = [r for r in held if r.offered_s == pytest.approx(r.reported_s + hold_s, abs=1e-3)]
    assert at_end
    for r in held:
        assert r.offered_s is not None
        waited = r.offered_s - r.reported_s
        if waited < hold_s - 1e-3 and waited < r.target_s - CONFIG.accept_delay_s:
            assert r.accepted_s is not None
            assert r.on_scene_s is not None
            # In time: at most the target, less what the crew took to accept.
            travel = r.on_scene_s - r.accepted_s
            assert travel <= (r.target_s - (r.offered_s - r.reported_s)) * 1.6
    plain = OfflineSimulator(CITY, CONFIG, _coverage(hold_priority=0)).run(day)
    assert not [r for r in plain.responses if r.held]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"dispatch_policy": "coverage", "queue_poll_s": 0.2})


async def test_live_a_held_incident_waits_unescalated_then_takes_the_far_unit(
    live: LiveServer,
) -> None:
    policy = live.services.dispatcher.policy
    assert isinstance(policy, CoverageAware)
    policy.hold_s = 2.0  # seconds, for the test
    # Only a distant police unit is free (4.4 km: beyond the reach).
    await live.db.execute(
        "UPDATE units SET status = 'off_duty' WHERE agency = 'police' AND id <> 'mancheswar-pcr-1'"
    )
    async with live.console() as console:
        await console.recv()
        answer = await live.post_panic(panic(zone_point("infocity"), "h-1", category="other"))
        incident_id = answer.json()["incident_id"]
        queued, _ = await receive_until(console, event_of("incident.queued"))
        assert queued["event"]["data"]["reason"].startswith("held for a unit that can arrive")
        row = await live.db.fetchrow("SELECT status, escalated FROM incidents")
        assert (row["status"], row["escalated"]) == ("queued", False)
        detail = (
            await live.http.get(
                f"/v1/incidents/{incident_id}",
                headers={"Authorization": f"Bearer {live.operator_token}"},
            )
        ).json()
        assert detail["waiting_reason"].startswith("held for a unit that can arrive")
        offered, seen = await receive_until(
            console, event_of("assignment.offered", incident_id=incident_id), within=8
        )
        assert offered["event"]["unit_id"] == "mancheswar-pcr-1"
        assert not [m for m in seen if m["event"]["type"] == "incident.escalated"]
    assert await live.db.fetchval("SELECT waiting_reason FROM incidents") is None
    # An urgent incident in the same place is not held.
    await live.db.execute("UPDATE units SET status = 'available' WHERE id = 'mancheswar-pcr-2'")
    urgent = await live.post_panic(panic(zone_point("infocity"), "h-2"))
    assert urgent.json()["status"] == "offered"


async def test_console_shows_why_a_held_incident_waits(
    live: LiveServer,
    page: Any,  # noqa: F811 - the fixture imported above
) -> None:
    """On the console's queue a held call says it is held, not just queued."""
    expect = playwright_api.expect
    policy = live.services.dispatcher.policy
    assert isinstance(policy, CoverageAware)
    policy.hold_s = 600.0
    await live.db.execute(
        "UPDATE units SET status = 'off_duty' WHERE agency = 'police' AND id <> 'mancheswar-pcr-1'"
    )
    await log_in(page, live)
    answer = await live.post_panic(panic(zone_point("infocity"), "h-3", category="other"))
    item = page.locator(
        f"[data-testid='queue-item'][data-incident-id='{answer.json()['incident_id']}']"
    )
    await expect(item).to_have_attribute("data-status", "queued")
    await expect(item.get_by_test_id("queue-waiting")).to_contain_text(
        "held for a unit that can arrive in time"
    )
    # After a reload the snapshot says it too (not only the live event).
    await page.reload()
    await expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")
    await expect(item.get_by_test_id("queue-waiting")).to_contain_text("held for a unit")


async def test_live_with_no_unit_free_at_all_a_low_priority_call_is_escalated(
    live: LiveServer,
) -> None:
    """The hold keeps near units for near calls; with every police unit busy or off
    duty there is nothing to hold for, and operators are told at once."""
    await live.db.execute("UPDATE units SET status = 'off_duty' WHERE agency = 'police'")
    answer = await live.post_panic(panic(zone_point("infocity"), "h-4", category="other"))
    assert answer.json()["status"] == "queued"
    row = await live.db.fetchrow("SELECT escalated, escalation_reason FROM incidents")
    assert row["escalated"] is True
    assert row["escalation_reason"] == "no available unit in reach (police: none free)"


async def test_live_a_declined_low_priority_call_with_no_other_unit_is_escalated(
    live: LiveServer,
) -> None:
    """The near unit is offered (no hold) and declines; the only free unit has refused
    it, so nothing is held back: the call is escalated, not left 'held'."""
    await live.db.execute(
        "UPDATE units SET status = 'off_duty' WHERE agency = 'police' AND id <> 'infocity-pcr-1'"
    )
    async with live.mdt("infocity-pcr-1") as mdt:
        await mdt.recv()
        await live.post_panic(panic(zone_point("infocity"), "h-5", category="other"))
        offer, _ = await receive_until(mdt, event_of("assignment.offered"))
        decline = {"type": "decline", "assignment_id": offer["event"]["data"]["assignment_id"]}
        await mdt.send(json.dumps(decline))
        await receive_until(mdt, lambda m: m["type"] == "ack")
    row = await live.db.fetchrow("SELECT status, escalated, escalation_reason FROM incidents")
    assert (row["status"], row["escalated"]) == ("queued", True)
    assert row["escalation_reason"] == "no available unit in reach (police: 1 unit refused it)"
    reasons = await live.db.fetch(
        "SELECT data->>'reason' AS reason FROM events WHERE type = 'incident.queued'"
    )
    assert not [r for r in reasons if r["reason"].startswith("held")]

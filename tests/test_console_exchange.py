"""The console's exchange controls (dispatch/console/exchange.js) in a real Chromium:
hand the selected incident over and see the hand-off; issue an alert around it and
cancel it."""

from __future__ import annotations

from typing import Any

from dispatch.exchange.agencies import Agency
from tests.conftest import LiveServer
from tests.test_console_browser import chromium, log_in, page, playwright_api
from tests.test_walking_skeleton import panic, zone_point

__all__ = ["chromium", "page"]  # the browser fixtures, used by name


async def test_hand_over_and_alert_from_the_console(live: LiveServer, page: Any) -> None:
    expect = playwright_api.expect
    # An agency nobody answers for: the hand-off stays pending, tried again and again.
    agencies = live.server.config.loaded_app.app.state.exchange.agencies  # type: ignore[attr-defined]
    agencies["cad.test"] = Agency("cad.test", "http://127.0.0.1:9", ("s" * 16,), "ems", "108 test")
    await log_in(page, live)
    incident_id = (await live.post_panic(panic(zone_point("capital"), "x-1"))).json()["incident_id"]
    item = page.locator(f"[data-testid='queue-item'][data-incident-id='{incident_id}']")
    await item.click()
    await expect(page.get_by_test_id("detail")).to_have_attribute(
        "data-incident-id", str(incident_id)
    )

    await page.get_by_test_id("handoff-agency").select_option("cad.test")
    await page.get_by_test_id("handoff-btn").click()
    row = page.locator("[data-testid='handoff-row'][data-agency='cad.test']")
    await expect(row).to_have_attribute("data-state", "pending")
    await expect(row).to_contain_text("tries")  # the receiver is down: tries show
    assert await live.db.fetchval("SELECT count(*) FROM handoffs") == 1

    await page.get_by_test_id("alert-headline").fill("Fire near Kalpana: keep away")
    await page.get_by_test_id("alert-event").fill("Fire")
    await page.get_by_test_id("alert-btn").click()
    alert = page.get_by_test_id("alert-row")
    await expect(alert).to_have_attribute("data-msg-type", "Alert")
    await page.get_by_test_id("alert-cancel").click()
    await expect(page.get_by_test_id("alert-row")).to_have_attribute("data-msg-type", "Cancel")
    assert await live.db.fetchval("SELECT count(*) FROM alerts") == 2

"""The console shows SHOUT volunteers: a marker per alerted or accepted volunteer, their
state in the incident's detail, and a stand-down button that reaches the volunteer."""

from __future__ import annotations

import json
from typing import Any

import websockets

from geo.points import GeoPoint
from tests.conftest import LiveServer, receive_until
from tests.test_console_browser import chromium, log_in, page, playwright_api
from tests.test_volunteers import alert, incident_at, offset

__all__ = ["chromium", "page"]  # fixtures, used by name


async def test_volunteer_markers_states_and_stand_down(live: LiveServer, page: Any) -> None:
    expect = playwright_api.expect
    await live.db.execute("UPDATE volunteers SET available = false")
    volunteer_id, token = next(iter(live.credentials["volunteers"].items()))
    await log_in(page, live)
    async with websockets.connect(
        live.ws_url + "/v1/ws/volunteer", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        where = json.loads(await ws.recv())["volunteer"]["position"]
        await ws.send(json.dumps({"type": "availability", "available": True}))
        home = GeoPoint(lat=where["lat"], lon=where["lon"])
        incident_id = await incident_at(live, offset(home, north_m=300), "console-volunteer")
        await receive_until(ws, alert("alerted"))

        marker = page.get_by_test_id(f"volunteer-{volunteer_id}")
        await expect(marker).to_have_attribute("data-state", "alerted")
        await page.locator(f"[data-testid='queue-item'][data-incident-id='{incident_id}']").click()
        row = page.locator(f"[data-testid='volunteer-row'][data-volunteer-id='{volunteer_id}']")
        await expect(row).to_have_attribute("data-state", "alerted")
        await row.get_by_test_id("stand-down").click()
        await receive_until(ws, alert("stood_down"))
        await expect(row).to_have_attribute("data-state", "stood_down")
        await expect(marker).to_have_count(0)

"""The operator sees which bus pressed its panic button: the console's detail panel
names the vehicle's registration, operator and type from the vehicles register."""

from __future__ import annotations

from typing import Any

from playwright import async_api as playwright_api

from tests.conftest import LiveServer
from tests.test_console_browser import FAST, chromium, log_in, page  # noqa: F401
from tests.test_vehicle_gateway import packet, send_packet
from tests.test_walking_skeleton import zone_point


async def test_the_detail_names_the_vehicle(live: LiveServer, page: Any) -> None:  # noqa: F811
    expect = playwright_api.expect
    auth = {"Authorization": f"Bearer {live.operator_token}"}
    put = await live.http.put(
        "/v1/vehicles/OD02AB1234",
        json={"operator": "Mo Bus (CRUT)", "vehicle_type": "bus"},
        headers=auth,
    )
    assert put.status_code == 200, put.text
    answer = (await send_packet(live, packet("EA", "10", zone_point("capital")))).json()
    await log_in(page, live)
    await page.locator(
        f"[data-testid='queue-item'][data-incident-id='{answer['incident_id']}']"
    ).click()
    vehicle = page.get_by_test_id("detail-vehicle")
    await expect(vehicle).to_have_text("OD02AB1234 · Mo Bus (CRUT) · bus", timeout=FAST)

"""What an operator reads at a glance: zone names, caller flags on the queue, a map whose
names do not run into each other, a tab the browser can tell apart."""

from __future__ import annotations

import json
import uuid
from typing import Any

from playwright import async_api as playwright_api

from tests.conftest import LiveServer
from tests.test_console_browser import FAST, chromium, log_in, page  # noqa: F401
from tests.test_walking_skeleton import panic, zone_point


async def test_the_console_has_a_favicon(live: LiveServer) -> None:
    icon = await live.http.get("/console/favicon.svg")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    page_html = (await live.http.get("/console/")).text
    assert 'rel="icon" href="favicon.svg"' in page_html


async def test_zone_names_on_the_map_do_not_overlap(live: LiveServer, page: Any) -> None:  # noqa: F811
    await log_in(page, live)
    boxes = await page.evaluate(
        """() => [...document.querySelectorAll('.zone-label')]
            .filter((t) => getComputedStyle(t).display !== 'none')
            .map((t) => { const b = t.getBBox(); return [b.x, b.y, b.width, b.height]; })"""
    )
    zones = len((await live.http.get("/v1/zones", headers=_auth(live))).json()["features"])
    assert len(boxes) >= zones // 2, "most zones keep their name on the map"
    for i, (ax, ay, aw, ah) in enumerate(boxes):
        for bx, by, bw, bh in boxes[i + 1 :]:
            overlap = ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah
            assert not overlap, ((ax, ay, aw, ah), (bx, by, bw, bh))


async def _hoax_caller(live: LiveServer) -> dict[str, Any]:
    """A phone whose last report was closed as a hoax; its next report is flagged."""
    phone = "+9194370" + str(uuid.uuid4().int)[:5]
    user = {"phone": phone}
    first = await live.post_panic(panic(zone_point("capital"), uuid.uuid4().hex, user=user))
    closed = await live.http.post(
        f"/v1/incidents/{first.json()['incident_id']}/close",
        json={"disposition": "hoax"},
        headers=_auth(live),
    )
    assert closed.status_code == 200, closed.text
    return user


def _auth(live: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.operator_token}"}


async def test_repeat_caller_flags_show_on_the_queue(live: LiveServer, page: Any) -> None:  # noqa: F811
    expect = playwright_api.expect
    user = await _hoax_caller(live)
    # Reported before the console opened: the flag comes with the snapshot.
    before = (
        await live.post_panic(panic(zone_point("capital"), uuid.uuid4().hex, user=user))
    ).json()
    await log_in(page, live)
    item = page.locator(f"[data-testid='queue-item'][data-incident-id='{before['incident_id']}']")
    await expect(item.get_by_test_id("queue-flag")).to_have_text("hoax_history")
    # Reported while it is open: the flag comes with the live event.
    during = (
        await live.post_panic(panic(zone_point("infocity"), uuid.uuid4().hex, user=user))
    ).json()
    assert during["incident_id"] != before["incident_id"] or during["duplicate_of"]
    item = page.locator(f"[data-testid='queue-item'][data-incident-id='{during['incident_id']}']")
    await expect(item.get_by_test_id("queue-flag")).to_have_text("hoax_history", timeout=FAST)


async def test_other_zones_are_named_in_the_detail(live: LiveServer, page: Any) -> None:  # noqa: F811
    expect = playwright_api.expect
    point = zone_point("capital")
    body = {
        "trigger_id": uuid.uuid4().hex,
        "device_id": uuid.uuid4().hex,
        # A cell-sized uncertainty: the circle reaches the neighbouring jurisdictions.
        "location": {"lat": point.lat, "lon": point.lon, "accuracy_m": 4000},
    }
    answer = (await live.post_panic(body)).json()
    incident = (
        await live.http.get(f"/v1/incidents/{answer['incident_id']}", headers=_auth(live))
    ).json()
    assert incident["other_zones"], "the circle overlaps other zones"
    names = {
        f["id"]: f["properties"]["name"]
        for f in (await live.http.get("/v1/zones", headers=_auth(live))).json()["features"]
    }
    await log_in(page, live)
    await page.locator(
        f"[data-testid='queue-item'][data-incident-id='{answer['incident_id']}']"
    ).click()
    summary = page.get_by_test_id("detail-summary")
    for zone_id in incident["other_zones"]:
        await expect(summary).to_contain_text(names[zone_id])
    text = await summary.inner_text()
    assert json.dumps(incident["other_zones"]) not in text
    assert ", ".join(incident["other_zones"]) not in text

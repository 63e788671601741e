"""The web console at /console, driven in a real (Debian) Chromium through Playwright.

The browser talks to a real server exactly as an operator's would: it logs in with the
operator token, draws the map from /v1/zones, follows the websocket, and acts through
the REST API. The server runs in this test's event loop, so only Playwright's async API
is used (a blocking call would freeze the server under test).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from dispatch.app import create_app
from dispatch.settings import Settings
from tests.conftest import MISSING, LiveServer, event_of, receive_until, require, stop_server
from tests.test_gateways_telecom_sms import CALLS, post
from tests.test_silent_calls import silent_call
from tests.test_walking_skeleton import panic, zone_point

playwright_api = pytest.importorskip(
    "playwright.async_api",
    reason=f"{MISSING}playwright is not installed (pip install -e '.[dev]')",
)

CHROMIUM = os.environ.get("ERSS_CHROMIUM", "/usr/bin/chromium")
# Required on this kind of machine (root, no GPU, no internet beyond package registries).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAST = 1_000  # ms: "within a second"
SLOW = 10_000  # ms: reconnects with backoff


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable. .ci/run installs it (apt-get install chromium); a test
    never does. Without it these tests skip locally and fail in CI."""
    require(
        os.path.exists(CHROMIUM),
        f"{CHROMIUM} not found (apt-get install chromium, or set ERSS_CHROMIUM)",
    )
    return CHROMIUM


@pytest.fixture
async def page(chromium: str) -> AsyncIterator[Any]:
    """A fresh browser profile and one page in it."""
    with tempfile.TemporaryDirectory(prefix="erss-chromium-") as profile:
        async with playwright_api.async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 850},
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                page.set_default_timeout(SLOW)
                yield page
            finally:
                await context.close()


def auth(live: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.operator_token}"}


async def log_in(page: Any, live: LiveServer) -> None:
    expect = playwright_api.expect
    await page.goto(live.base_url + "/console/")
    await page.get_by_test_id("token").fill(live.operator_token)
    await page.get_by_test_id("login-btn").click()
    await expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")
    await expect(page.get_by_test_id("zone").first).to_be_attached()
    await expect(page.locator("[data-testid^='unit-']").first).to_be_attached()


async def test_console_is_served_from_the_package(live: LiveServer) -> None:
    response = await live.http.get("/console/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert 'src="console.js"' in response.text
    for asset in ("console.js", "console.css"):
        assert (await live.http.get(f"/console/{asset}")).status_code == 200
    # Nothing is fetched from elsewhere: no CDN, fonts or tiles.
    for asset in ("", "console.js", "console.css"):
        text = (await live.http.get(f"/console/{asset}")).text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


async def test_bad_token_is_refused(live: LiveServer, page: Any) -> None:
    expect = playwright_api.expect
    await page.goto(live.base_url + "/console/")
    await page.get_by_test_id("token").fill("not-a-token")
    await page.get_by_test_id("login-btn").click()
    await expect(page.get_by_test_id("login-error")).to_contain_text("Invalid")
    await expect(page.get_by_test_id("app")).to_be_hidden()


async def test_panic_shows_live_then_manual_assignment_is_accepted(
    live: LiveServer, page: Any
) -> None:
    expect = playwright_api.expect
    await log_in(page, live)

    point = zone_point("capital")
    response = await live.post_panic(panic(point, "browser-1"))
    assert response.status_code == 202, response.text
    incident_id = response.json()["incident_id"]
    posted = time.monotonic()
    item = page.locator(f"[data-testid='queue-item'][data-incident-id='{incident_id}']")
    await expect(item).to_be_visible(timeout=FAST)
    await expect(page.get_by_test_id(f"incident-marker-{incident_id}")).to_be_attached(timeout=FAST)
    assert time.monotonic() - posted < 1.5  # generous for the assertion round trips

    # The recommendation went to the nearest unit; the operator picks another one.
    await expect(item).to_have_attribute("data-status", "offered")
    units = (await live.http.get("/v1/units", headers=auth(live))).json()
    chosen = next(
        u["id"]
        for u in units
        if u["agency"] == "police" and u["zone_id"] == "capital" and u["status"] == "available"
    )
    await item.click()
    await expect(page.get_by_test_id("detail")).to_have_attribute(
        "data-incident-id", str(incident_id)
    )
    await expect(page.get_by_test_id("uncertainty-circle")).to_be_attached()
    await expect(page.get_by_test_id("report-row")).to_have_count(1)
    await expect(page.get_by_test_id("timeline-event").first).to_have_attribute(
        "data-type", "incident.created"
    )

    async with live.mdt(chosen) as mdt:
        assert json.loads(await mdt.recv())["type"] == "snapshot"
        await page.get_by_test_id("assign-unit").select_option(chosen)
        await page.get_by_test_id("assign-btn").click()
        row = page.locator(f"[data-testid='assignment-row'][data-unit-id='{chosen}']")
        await expect(row).to_have_attribute("data-status", "offered")
        await expect(page.get_by_test_id(f"unit-{chosen}")).to_have_attribute(
            "data-status", "offered"
        )

        offer, _ = await receive_until(mdt, event_of("assignment.offered", unit_id=chosen))
        assert offer["event"]["data"]["tier"] == "manual"
        assignment_id = offer["event"]["data"]["assignment_id"]
        await mdt.send(json.dumps({"type": "accept", "assignment_id": assignment_id}))
        ack, _ = await receive_until(mdt, lambda m: m["type"] in ("ack", "error"))
        assert ack["type"] == "ack", ack

        await expect(row).to_have_attribute("data-status", "accepted", timeout=FAST * 3)
        await expect(page.get_by_test_id("detail-status")).to_have_text("dispatched")
        await expect(item).to_have_attribute("data-status", "dispatched")
        await expect(page.get_by_test_id(f"unit-{chosen}")).to_have_attribute(
            "data-status", "dispatched"
        )

    # A note and a close through the UI; the closed incident leaves the queue and map.
    await page.get_by_test_id("note-text").fill("caller says two men near the gate")
    await page.get_by_test_id("note-btn").click()
    await expect(
        page.locator("[data-testid='timeline-event'][data-type='incident.note_added']")
    ).to_have_count(1)
    # Classify from the deployment's own list of types (served, not built into the page).
    types = (await live.http.get("/v1/incident-types", headers=auth(live))).json()
    await expect(page.get_by_test_id("classify-type").locator("option")).to_have_count(len(types))
    await page.get_by_test_id("classify-type").select_option("crime_in_progress")
    await page.get_by_test_id("classify-btn").click()
    await expect(
        page.locator("[data-testid='timeline-event'][data-type='incident.reprioritised']")
    ).to_have_count(1)
    assert (
        await live.db.fetchval("SELECT type FROM incidents WHERE id = $1", incident_id)
        == "crime_in_progress"
    )
    await page.get_by_test_id("geocode-q").fill("Kalpana")
    await page.get_by_test_id("geocode-btn").click()
    await expect(page.get_by_test_id("geocode-result").first).to_be_visible()
    await page.screenshot(path=Path(tempfile.gettempdir()) / "console.png")

    await page.get_by_test_id("close-disposition").fill("resolved")
    await page.get_by_test_id("close-btn").click()
    await expect(page.get_by_test_id("detail-status")).to_have_text("closed")
    await expect(item).to_have_count(0)
    await expect(page.get_by_test_id(f"incident-marker-{incident_id}")).to_have_count(0)
    await expect(page.get_by_test_id(f"unit-{chosen}")).to_have_attribute(
        "data-status", "available"
    )


@dataclass
class Restartable:
    """The live server's process, stopped and started again on the same port."""

    live: LiveServer
    port: int
    task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self.task is None:  # the live fixture's own server: find its serve() task
            self.task = next(
                t
                for t in asyncio.all_tasks()
                if getattr(t.get_coro(), "cr_frame", None) is not None
                and t.get_coro().cr_frame.f_locals.get("self") is self.live.server  # type: ignore[union-attr]
            )
        await stop_server(self.live.server, self.task)

    async def start(self, settings: Settings) -> None:
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            ws_per_message_deflate=settings.ws_per_message_deflate,
        )
        server = uvicorn.Server(config)
        self.task = asyncio.create_task(server.serve())
        for _ in range(500):
            if server.started:
                break
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("uvicorn did not restart in 5 s")
        self.live.server = server


async def test_console_reconnects_after_a_server_restart_and_catches_up(
    live: LiveServer, page: Any
) -> None:
    expect = playwright_api.expect
    await log_in(page, live)
    first = await live.post_panic(panic(zone_point("capital"), "before-restart"))
    first_id = first.json()["incident_id"]
    first_item = page.locator(f"[data-testid='queue-item'][data-incident-id='{first_id}']")
    await expect(first_item).to_be_visible(timeout=FAST)
    snapshots = await page.evaluate("window.erssConsole.snapshots")

    port = int(live.base_url.rsplit(":", 1)[1])
    restart = Restartable(live, port)
    await restart.stop()
    status = page.get_by_test_id("conn-status")
    await expect(status).to_have_attribute("data-state", "reconnecting")
    await expect(status).to_contain_text("reconnecting")
    # Wait until the console's backoff has grown (500, 1000, then 2000 ms): its next
    # attempt is at least 1.6 s away, time enough to restart and make events meanwhile.
    await page.wait_for_function("window.erssConsole.backoff >= 4000")

    await restart.start(live.settings)
    try:
        # Events made while the console is still disconnected (it is backing off).
        second = await live.post_panic(panic(zone_point("capital"), "after-restart"))
        assert second.status_code == 202, second.text
        second_id = second.json()["incident_id"]
        closed = await live.http.post(
            f"/v1/incidents/{first_id}/close", json={"disposition": "hoax"}, headers=auth(live)
        )
        assert closed.status_code == 200, closed.text
        was_live = await page.evaluate("window.erssConsole.status")

        await expect(status).to_have_attribute("data-state", "live", timeout=SLOW)
        second_item = page.locator(f"[data-testid='queue-item'][data-incident-id='{second_id}']")
        await expect(second_item).to_be_visible()
        await expect(page.get_by_test_id(f"incident-marker-{second_id}")).to_be_attached()
        await expect(first_item).to_have_count(0)
        # It resumed with ?after= (a replay), not by starting over from a snapshot.
        assert await page.evaluate("window.erssConsole.resumes") >= 1
        assert await page.evaluate("window.erssConsole.snapshots") == snapshots
        assert was_live == "reconnecting"
    finally:
        if restart.task is not None:
            await stop_server(live.server, restart.task)


async def test_operator_takes_a_unit_off_and_splits_a_wrongly_joined_report(
    live: LiveServer, page: Any
) -> None:
    """The unit panel sets a free unit out of service (and back); a report joined to the
    wrong incident is split off into one of its own, which appears in the queue."""
    expect = playwright_api.expect
    await log_in(page, live)

    # Unit panel: find a unit by its call sign, take it out of service, bring it back.
    await page.get_by_test_id("unit-filter").fill("capital-pcr-2")
    row = page.locator("[data-testid='unit-row'][data-unit-id='capital-pcr-2']")
    await expect(row).to_have_attribute("data-status", "available")
    await page.get_by_test_id("unit-reason").fill("puncture")
    await row.get_by_test_id("unit-set-out_of_service").click()
    await expect(row).to_have_attribute("data-status", "out_of_service")
    await expect(page.get_by_test_id("unit-capital-pcr-2")).to_have_attribute(
        "data-status", "out_of_service"
    )
    reason = await live.db.fetchval(
        "SELECT data->>'reason' FROM events WHERE type = 'unit.status_changed'"
        " AND unit_id = 'capital-pcr-2' ORDER BY id DESC LIMIT 1"
    )
    assert reason == "puncture"
    await row.get_by_test_id("unit-set-available").click()
    await expect(row).to_have_attribute("data-status", "available")

    # Two triggers of one device join one incident; the second was someone else's.
    point = zone_point("lingaraj")
    first = await live.post_panic(panic(point, "joined-1", device_id="dev-shared"))
    second = await live.post_panic(panic(point, "joined-2", device_id="dev-shared"))
    incident_id = first.json()["incident_id"]
    assert second.json()["incident_id"] == incident_id
    item = page.locator(f"[data-testid='queue-item'][data-incident-id='{incident_id}']")
    await item.click()
    await expect(page.get_by_test_id("report-row")).to_have_count(2)
    report_id = second.json()["report_id"]
    split_row = page.locator(f"[data-testid='report-row'][data-report-id='{report_id}']")
    await split_row.get_by_test_id("split-report").click()
    await expect(page.get_by_test_id("action-message")).to_contain_text("is now incident #")
    new_id = await live.db.fetchval("SELECT incident_id FROM reports WHERE id = $1", report_id)
    assert new_id != incident_id
    new_item = page.locator(f"[data-testid='queue-item'][data-incident-id='{new_id}']")
    await expect(new_item).to_be_visible(timeout=FAST * 3)
    await expect(page.get_by_test_id("report-row")).to_have_count(1)


async def test_call_with_no_fix_is_placed_from_a_geocoded_address(
    live: LiveServer, page: Any
) -> None:
    """A voice call with no AML waits for a location; the operator geocodes the caller's
    words and places it there from the console; it is dispatched at once. A silent call
    called back is confirmed with one button."""
    expect = playwright_api.expect
    await log_in(page, live)
    call = await post(live, CALLS, "telecom", {"call_id": "geo-1", "caller": "+919437000999"})
    incident_id = call.json()["incident_id"]
    item = page.locator(f"[data-testid='queue-item'][data-incident-id='{incident_id}']")
    await expect(item).to_have_attribute("data-status", "awaiting_location", timeout=FAST * 3)
    await item.click()
    await page.get_by_test_id("geocode-q").fill("Kalpana")
    await page.get_by_test_id("geocode-btn").click()
    await page.get_by_test_id("geocode-place").first.click()
    await expect(page.get_by_test_id("action-message")).to_contain_text("Placed at")
    await expect(item).to_have_attribute("data-status", "offered", timeout=FAST * 3)
    await expect(page.get_by_test_id(f"incident-marker-{incident_id}")).to_be_attached()
    row = await live.db.fetchrow(
        "SELECT status, location_method, zone_id FROM incidents WHERE id = $1", incident_id
    )
    assert (row["status"], row["location_method"]) == ("offered", "operator")
    assert row["zone_id"] is not None

    silent = await post(
        live,
        CALLS,
        "telecom",
        silent_call(
            "geo-2",
            location={
                "lat": zone_point("airfield").lat,
                "lon": zone_point("airfield").lon,
                "radius_m": 300.0,
            },
        ),
    )
    silent_id = silent.json()["incident_id"]
    callback = page.locator(f"[data-testid='queue-item'][data-incident-id='{silent_id}']")
    await callback.click()
    await expect(page.get_by_test_id("confirm-form")).to_be_visible()
    await page.get_by_test_id("confirm-btn").click()
    await expect(callback).to_have_attribute("data-status", "offered", timeout=FAST * 3)
    await expect(page.get_by_test_id("confirm-form")).to_be_hidden()


async def test_a_moving_unit_moves_on_the_map_without_polling(live: LiveServer, page: Any) -> None:
    """An MDT's pings reach the map within a couple of seconds (pushed; the fleet poll
    is every 30 s)."""
    expect = playwright_api.expect
    await log_in(page, live)
    marker = page.get_by_test_id("unit-capital-pcr-1")
    await expect(marker).to_be_attached()
    before = await marker.get_attribute("cx")
    target = zone_point("nandankanan")
    async with live.mdt("capital-pcr-1") as mdt:
        await mdt.recv()
        fix = {"type": "location", "lat": target.lat, "lon": target.lon, "accuracy_m": 5.0}
        await mdt.send(json.dumps(fix))
        await expect(marker).not_to_have_attribute("cx", before or "", timeout=FAST * 3)
    assert await page.evaluate("window.erssConsole.positionBatches") >= 1

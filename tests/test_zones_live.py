"""Zones on a running server: reload from a file, overlapping circles, swapped coordinates."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from dispatch.demo import DEMO_GEOJSON
from dispatch.settings import Settings
from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import panic, zone_point

CONFIG = Path(__file__).resolve().parents[1] / "config"


@pytest.fixture
async def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"zone_refresh_s": 0.2})


async def _zones_load(settings: Settings, path: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERSS_")}
    env.update(
        ERSS_DATABASE_URL=str(settings.database_url),
        ERSS_REDIS_URL=str(settings.redis_url),
        ERSS_DB_SCHEMA=settings.db_schema,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatch.cli",
        "zones",
        "load",
        str(path),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_reloaded_zones_reach_the_running_server(live: LiveServer, tmp_path: Path) -> None:
    collection = json.loads((CONFIG / DEMO_GEOJSON).read_text())
    for feature in collection["features"]:
        if feature["properties"]["Name"] == "Capital Police Station":
            # The id is given, so the renamed station keeps its zone id.
            feature["id"] = "capital"
            feature["properties"]["Name"] = "Capital (Kharavela) Police Station"
    renamed = tmp_path / "city.geojson"
    renamed.write_text(json.dumps(collection))
    code, out = await _zones_load(live.settings, renamed)
    assert code == 0, out
    assert "17 zones stored" in out
    auth = {"Authorization": f"Bearer {live.operator_token}"}
    name = None
    for _ in range(50):
        answer = (await live.post_panic(panic(zone_point("capital"), trigger=f"z{_}"))).json()
        detail = await live.http.get(f"/v1/incidents/{answer['incident_id']}", headers=auth)
        name = detail.json()["zone"]["name"]
        if name.startswith("Capital (Kharavela)"):
            break
        await asyncio.sleep(0.1)
    assert name == "Capital (Kharavela) Police Station"

    broken = tmp_path / "broken.geojson"
    broken.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"name": "Bowtie"},
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
                        },
                    }
                ],
            }
        )
    )
    code, out = await _zones_load(live.settings, broken)
    assert code == 1
    assert "Bowtie" in out
    assert await live.db.fetchval("SELECT count(*) FROM zones") == 17


async def test_swapped_coordinates_are_escalated_not_plotted(live: LiveServer) -> None:
    right = zone_point("sahidnagar")
    async with live.console() as console:
        await console.recv()
        fix = {"lat": right.lon, "lon": right.lat, "accuracy_m": 10.0}
        answer = await live.post_panic({"trigger_id": "s", "device_id": "s", "location": fix})
        assert answer.json()["status"] == "queued"
        escalated, _ = await receive_until(console, event_of("incident.escalated"))
    reason = escalated["event"]["data"]["reason"]
    assert "exchanged" in reason
    assert "Sahidnagar" in reason
    assert await live.count("assignments") == 0


async def test_a_wide_circle_lists_the_other_zones(live: LiveServer) -> None:
    point = zone_point("capital")
    body = {
        "trigger_id": "w",
        "device_id": "w",
        "location": {"lat": point.lat, "lon": point.lon, "accuracy_m": 4000.0},
    }
    answer = (await live.post_panic(body)).json()
    detail = await live.http.get(
        f"/v1/incidents/{answer['incident_id']}",
        headers={"Authorization": f"Bearer {live.operator_token}"},
    )
    incident = detail.json()
    assert incident["zone"]["id"] == "capital"
    assert "capital" not in incident["other_zones"]
    assert "kharavel-nagar" in incident["other_zones"]

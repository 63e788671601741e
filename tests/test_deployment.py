"""The deployment files, checked by reading them (no Docker engine runs here), and
`erss demo`, the one-shot set-up step the compose file runs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import yaml

from dispatch.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_compose_runs_two_instances_behind_a_websocket_proxy() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "setup", "app1", "app2", "proxy"} <= set(services)
    for name in ("app1", "app2"):
        app = services[name]
        assert app["command"][:2] == ["erss", "serve"]
        assert app["environment"]["ERSS_DATABASE_URL"].startswith("postgresql://")
        assert app["environment"]["ERSS_REDIS_URL"].startswith("redis://")
        assert app["depends_on"]["setup"]["condition"] == "service_completed_successfully"
        assert "/readyz" in " ".join(app["healthcheck"]["test"])
    assert services["setup"]["command"][:2] == ["erss", "demo"]
    assert services["proxy"]["depends_on"]["app1"]["condition"] == "service_healthy"
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server app1:8112" in nginx
    assert "server app2:8112" in nginx
    assert "proxy_set_header Upgrade $http_upgrade" in nginx
    mount = services["proxy"]["volumes"][0].split(":")[0]
    assert (ROOT / mount).resolve() == (ROOT / "deploy" / "nginx.conf").resolve()


async def test_erss_demo_loads_the_city_once_and_exits(settings: Settings, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERSS_")}
    env.update(
        ERSS_DATABASE_URL=str(settings.database_url),
        ERSS_DB_SCHEMA=settings.db_schema,
        ERSS_DATA_DIR=str(tmp_path),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatch.cli",
        "demo",
        "--base-url",
        "http://proxy:8080",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    credentials = json.loads((tmp_path / "demo-credentials.json").read_text())
    assert credentials["base_url"] == "http://proxy:8080"
    assert len(credentials["units"]) == 51
    assert {"dispatcher", "supervisor", "north-desk"} == set(credentials["operators"])

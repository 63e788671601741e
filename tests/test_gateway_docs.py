"""docs/gateways.md is the gateway contract: its examples run, and the OpenAPI document
carries the same bodies and answers."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer

DOC = Path(__file__).resolve().parents[1] / "docs" / "gateways.md"
GATEWAY_ROUTES = {
    "/v1/gateways/panic": ("application/json", {"trigger_id", "device_id"}),
    "/v1/gateways/telecom/calls": ("application/json", {"call_id", "caller"}),
    "/v1/gateways/sms": ("application/json", {"message_id", "from"}),
    "/v1/gateways/aml": ("application/x-www-form-urlencoded", {"device_number"}),
    "/v1/gateways/vehicle": ("application/json", {"alert_id", "imei"}),
}


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)


async def test_every_example_in_the_doc_is_accepted(live: LiveServer, tmp_path: Path) -> None:
    for tool in ("bash", "curl", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed to run docs/gateways.md's examples")
    (tmp_path / ".erss").mkdir()
    (tmp_path / ".erss" / "demo-credentials.json").write_text(json.dumps(live.credentials))
    blocks = _bash_blocks()
    assert len(blocks) == 4
    for block in blocks:
        script = re.sub(r"^BASE=.*$", f"BASE={live.base_url}", block, flags=re.M)
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            script,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        answer: dict[str, Any] = json.loads(out)
        assert isinstance(answer.get("incident_id"), int), (block, answer)
    assert await live.count("reports") == 4
    located = await live.db.fetchval("SELECT count(*) FROM reports WHERE lat IS NOT NULL")
    assert located == 4, "every example carries a usable location"


async def test_openapi_documents_every_gateway_body_and_answer(live: LiveServer) -> None:
    document = (await live.http.get("/openapi.json")).json()
    for path, (media, identity) in GATEWAY_ROUTES.items():
        operation = document["paths"][path]["post"]
        schema = operation["requestBody"]["content"][media]["schema"]
        assert identity <= set(schema["properties"]), (path, schema["properties"].keys())
        assert {"202", "401", "409", "413", "422", "429", "503"} <= set(operation["responses"])
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert {"X-ERSS-Signature", "X-ERSS-Timestamp", "Idempotency-Key"} <= headers
    panic = document["paths"]["/v1/gateways/panic"]["post"]["requestBody"]
    location = panic["content"]["application/json"]["schema"]["properties"]["location"]
    # The nested model is written in place, not as a dangling $defs reference.
    assert "$ref" not in json.dumps(location)
    vehicle = document["paths"]["/v1/gateways/vehicle"]["post"]["requestBody"]["content"]
    assert "text/plain" in vehicle, "the raw AIS-140 packet is a documented body"

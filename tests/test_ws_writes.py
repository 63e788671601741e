"""Live messages that queue up together reach a socket in one write, intact and in
order; with per-message deflate negotiated they go one by one, compressed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dispatch.settings import Settings
from tests.conftest import LiveServer, receive_until, wait_for


@pytest.fixture(params=[False, True], ids=["plain", "deflate"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The usual private settings, with per-message deflate off and on."""
    return settings.model_copy(update={"ws_per_message_deflate": request.param})


def _sent(live: LiveServer) -> tuple[float, float]:
    registry = live.services.metrics.registry
    messages = registry.get_sample_value("erss_ws_live_messages_total") or 0.0
    writes = registry.get_sample_value("erss_ws_live_writes_total") or 0.0
    return messages, writes


def _note(position: int) -> dict[str, Any]:
    # Non-ASCII and a long text: the frame's length is in bytes and needs the 16-bit form.
    return {
        "type": "event",
        "position": str(position),
        "event": {
            "type": "incident.note_added",
            "incident_id": None,
            "unit_id": None,
            "zone_id": None,
            "data": {"text": "नोट " + "x" * 300 + str(position)},
        },
    }


async def test_a_burst_of_events_is_one_write_unless_deflate_is_negotiated(
    live: LiveServer,
) -> None:
    deflate = live.settings.ws_per_message_deflate
    async with live.console() as console:
        snapshot = json.loads(await console.recv())
        assert snapshot["type"] == "snapshot"
        assert (console.protocol.extensions != []) is deflate
        start = int(snapshot["position"]) + 1000
        before = _sent(live)
        # One synchronous hand-over, as the hub does with one read of the stream: the
        # console's writer cannot run in between, so all three are queued at once.
        for position in range(start, start + 3):
            live.services.hub.deliver(_note(position))
        last, seen = await receive_until(
            console, lambda m: m.get("position") == str(start + 2), within=5
        )

        async def counted() -> tuple[float, float] | None:
            now = _sent(live)
            return now if now[0] >= before[0] + 3 else None

        after = await wait_for(counted, what="the three messages counted")
    got = [m for m in seen if m["type"] == "event"] + [last]
    assert got == [_note(p) for p in range(start, start + 3)]
    assert after[0] - before[0] == 3
    # Plain: the three frames went in one write. Deflate: each frame is compressed for
    # this connection, so one write each (and the client read them, so they were right).
    assert after[1] - before[1] == (3 if deflate else 1)


async def test_the_events_of_one_transaction_reach_a_console_in_one_write(
    live: LiveServer,
) -> None:
    """The relay publishes a batch atomically, so the hub reads it whole: a bare Redis
    pipeline would wake the hub's blocked read with the first event alone."""
    deflate = live.settings.ws_per_message_deflate
    async with live.console() as console:
        await console.recv()
        before = _sent(live)
        total = await live.db.fetchval(
            "WITH added AS (INSERT INTO events (type, actor, data) SELECT"
            " 'incident.note_added', 'test', jsonb_build_object('n', n)"
            " FROM generate_series(1, 3) AS n RETURNING id) SELECT count(*) FROM added"
        )
        await live.db.execute(f"NOTIFY erss_events_{live.settings.db_schema}")
        _, seen = await receive_until(
            console, lambda m: m.get("type") == "event" and m["event"]["data"].get("n") == 3
        )

        async def counted() -> tuple[float, float] | None:
            now = _sent(live)
            return now if now[0] >= before[0] + total else None

        after = await wait_for(counted, what="the three messages counted")
    assert [m["event"]["data"]["n"] for m in seen if m["type"] == "event"] == [1, 2]
    assert after[0] - before[0] == 3
    assert after[1] - before[1] == (3 if deflate else 1)

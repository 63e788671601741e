"""Hostile and broken clients on both websockets, and who may open which socket.

Every frame a client can send gets an error message (or, past the transport's limit, a
close frame with a documented code); the sender's socket keeps working, and a client
connected beside it never notices.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from dispatch.api.ws_frames import MAX_DEPTH, MAX_FRAME_CHARS
from tests.conftest import LiveServer, event_of, receive_until
from tests.test_walking_skeleton import panic, zone_point

UNIT = "capital-pcr-1"

# (what is sent, the error it must get)
HOSTILE: list[tuple[str | bytes, str]] = [
    (b"\x00\x01binary", "binary_frame"),
    (b"", "binary_frame"),
    ("x" * (MAX_FRAME_CHARS + 1), "message_too_large"),
    ("[" * 30_000 + "]" * 30_000, "invalid_message"),  # json.loads' RecursionError
    (json.dumps({"type": "ping", "x": json.loads("[" * 50 + "]" * 50)}), "invalid_message"),
    (
        json.dumps({"type": "ping", "x": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)}),
        "invalid_message",
    ),
    ("{not json", "invalid_json"),
    ("", "invalid_json"),
    ("\x00", "invalid_json"),
    ("[1, 2]", "invalid_message"),
    ("42", "invalid_message"),
    ("null", "invalid_message"),
    ('"ping"', "invalid_message"),
    ("{}", "invalid_message"),
    ('{"type": 5}', "invalid_message"),
    ('{"type": "fly"}', "unknown_type"),
    ('{"type": "' + "z" * 5000 + '"}', "unknown_type"),
    ('{"type": "resume"}', "invalid_message"),
    ('{"type": "resume", "after": 7}', "invalid_message"),
    ('{"type": "resume", "after": "seven"}', "invalid_position"),
    ('{"type": "ping", "note": "nul \\u0000 inside"}', "invalid_message"),
    ('{"type": "ping", "note": "lone \\ud800 surrogate"}', "invalid_message"),
    ('{"type": "auth", "token": "again"}', "invalid_message"),
]
# Only the MDT socket takes these; on a console each is an unknown_type.
MDT_HOSTILE: list[tuple[str | bytes, str]] = [
    ('{"type": "accept"}', "invalid_message"),
    ('{"type": "accept", "assignment_id": "3"}', "invalid_message"),
    ('{"type": "decline", "assignment_id": true}', "invalid_message"),
    ('{"type": "decline", "assignment_id": 1.5}', "invalid_message"),
    ('{"type": "status"}', "invalid_message"),
    ('{"type": "status", "status": ["en_route"]}', "invalid_message"),
    ('{"type": "status", "status": "en_\\u0000route"}', "invalid_message"),
    ('{"type": "location", "lat": "20.2", "lon": 85.8}', "invalid_message"),
    ('{"type": "location", "lat": 91, "lon": 85.8}', "invalid_location"),
    ('{"type": "location", "lat": 20.2, "lon": 85.8, "time": "yesterday"}', "invalid_message"),
]


def _open(live: LiveServer, kind: str) -> Any:
    return live.console() if kind == "console" else live.mdt(UNIT)


async def _alive(ws: Any) -> None:
    """The socket still answers a ping (events may arrive before the pong)."""
    await ws.send(json.dumps({"type": "ping"}))
    await receive_until(ws, lambda m: m["type"] == "pong")


@pytest.mark.parametrize("kind", ["console", "mdt"])
async def test_every_hostile_frame_gets_an_error_and_nobody_else_notices(
    live: LiveServer, kind: str
) -> None:
    frames = HOSTILE + (
        MDT_HOSTILE if kind == "mdt" else [(f, "unknown_type") for f, _ in MDT_HOSTILE[:1]]
    )
    async with _open(live, kind) as sender, live.console() as bystander:
        await sender.recv()
        await bystander.recv()
        for frame, code in frames:
            await sender.send(frame)
            reply, _ = await receive_until(sender, lambda m: m["type"] in ("error", "pong"))
            label = frame[:40]
            assert reply["type"] == "error", (label, reply)
            assert reply["error"] == code, (label, reply)
            assert reply["code"] == code, "code stays for older clients"
            assert reply["detail"], label
            if isinstance(frame, str) and len(frame) > 1000:
                assert len(json.dumps(reply)) < 1000, "a hostile frame is not echoed back"
        await _alive(sender)
        point = zone_point("capital")
        incident_id = (await live.post_panic(panic(point))).json()["incident_id"]
        await receive_until(bystander, event_of("incident.created", incident_id=incident_id))
        await _alive(bystander)


@pytest.mark.parametrize("kind", ["console", "mdt"])
async def test_a_frame_past_the_transport_limit_is_closed_with_1009(
    live: LiveServer, kind: str
) -> None:
    """Past uvicorn's --ws-max-size (16 MiB) the frame is never read: close 1009."""
    limit = live.server.config.ws_max_size
    async with _open(live, kind) as sender, live.console() as bystander:
        await sender.recv()
        await bystander.recv()

        async def send_too_much() -> None:
            await sender.send("y" * (limit + 1))
            await receive_until(sender, lambda m: False, within=20)

        with pytest.raises(ConnectionClosed) as closed:
            await send_too_much()
        assert closed.value.rcvd is not None, "a close frame, not a dropped connection"
        assert closed.value.rcvd.code == 1009
        await _alive(bystander)


async def _refused(ws: Any, within: float = 10.0) -> tuple[dict[str, Any], int]:
    """The error message and close code of a refused socket (a close frame required)."""
    message = json.loads(await asyncio.wait_for(ws.recv(), within))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), within)
    assert closed.value.rcvd is not None, "a close frame, not a dropped connection"
    return message, closed.value.rcvd.code


async def test_a_unit_token_is_refused_on_the_console_socket(live: LiveServer) -> None:
    token = live.credentials["units"][UNIT]
    for headers, query in (({"Authorization": f"Bearer {token}"}, ""), ({}, f"?token={token}")):
        async with websockets.connect(
            live.ws_url + "/v1/ws/console" + query, additional_headers=headers
        ) as ws:
            message, code = await _refused(ws)
            assert (message["error"], code) == ("Unauthorized", 4401)
    async with websockets.connect(live.ws_url + "/v1/ws/console") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        message, code = await _refused(ws)
        assert (message["error"], code) == ("Unauthorized", 4401)
        assert token not in json.dumps(message)


async def test_an_operator_token_is_refused_on_the_mdt_socket(live: LiveServer) -> None:
    token = live.operator_token
    async with websockets.connect(
        live.ws_url + "/v1/ws/mdt", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        message, code = await _refused(ws)
        assert (message["error"], code) == ("Unauthorized", 4401)
    async with websockets.connect(live.ws_url + "/v1/ws/mdt") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        message, code = await _refused(ws)
        assert (message["error"], code) == ("Unauthorized", 4401)


@pytest.mark.parametrize("kind", ["console", "mdt"])
async def test_first_message_auth_opens_the_socket(live: LiveServer, kind: str) -> None:
    token = live.operator_token if kind == "console" else live.credentials["units"][UNIT]
    async with websockets.connect(f"{live.ws_url}/v1/ws/{kind}") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert snapshot["type"] == "snapshot"
        await _alive(ws)
    # Its after resumes, as ?after= does.
    async with websockets.connect(f"{live.ws_url}/v1/ws/{kind}") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token, "after": snapshot["position"]}))
        replayed = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert replayed == {"type": "replayed", "position": snapshot["position"]}


@pytest.mark.parametrize(
    "first",
    [
        json.dumps({"type": "ping"}),
        json.dumps({"type": "auth"}),
        json.dumps({"type": "auth", "token": 12345}),
        b"binary",
        "{not json",
        "[" * 30_000,
    ],
)
async def test_a_first_message_that_is_not_auth_is_refused(
    live: LiveServer, first: str | bytes
) -> None:
    async with websockets.connect(live.ws_url + "/v1/ws/console") as ws:
        await ws.send(first)
        message, code = await _refused(ws)
        assert (message["error"], code) == ("Unauthorized", 4401)
        assert "auth" in message["detail"]


async def test_no_auth_message_times_out_with_4401(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dispatch.api.ws_auth.AUTH_TIMEOUT_S", 0.5)
    loop = asyncio.get_running_loop()
    async with websockets.connect(live.ws_url + "/v1/ws/mdt") as ws:
        started = loop.time()
        message, code = await _refused(ws, within=10)
        assert (message["error"], code) == ("Unauthorized", 4401)
        assert "within 0.5 s" in message["detail"]
        assert loop.time() - started < 9


async def test_a_bad_resume_position_on_connect_is_closed_with_4400(live: LiveServer) -> None:
    async with websockets.connect(live.ws_url + "/v1/ws/console") as ws:
        await ws.send(json.dumps({"type": "auth", "token": live.operator_token, "after": "x"}))
        message, code = await _refused(ws)
        assert (message["error"], code) == ("invalid_position", 4400)


def test_an_event_with_null_data_does_not_trip_an_mdt_scope() -> None:
    """The hub asks every MDT's scope about every event: a scope must not raise."""
    from dispatch.scope import MdtScope

    scope = MdtScope(UNIT, [1])
    event = {"type": "unit.status_changed", "unit_id": UNIT, "incident_id": 1, "data": None}
    assert scope.admits(event)

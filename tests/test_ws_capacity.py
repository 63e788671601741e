"""An instance holds a bounded number of websockets, keeping descriptors for gateways."""

from __future__ import annotations

import asyncio
import json
import resource

import pytest
import websockets

from dispatch.capacity import RESERVED_FDS, ConnectionLimit, default_limit, limit_for
from dispatch.settings import Settings
from tests.conftest import LiveServer


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ws_max_connections": 2})


async def test_beyond_the_limit_a_socket_is_told_to_come_back_later(live: LiveServer) -> None:
    """The third socket gets an at_capacity error and close code 1013; gateways still
    answer; once one socket closes, a new one is served."""
    async with live.mdt("capital-pcr-1") as first, live.console() as second:
        assert json.loads(await first.recv())["type"] == "snapshot"
        assert json.loads(await second.recv())["type"] == "snapshot"
        async with live.mdt("capital-pcr-2") as third:
            error = json.loads(await third.recv())
            assert error["code"] == "at_capacity"
            assert "limit of 2" in error["detail"]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await third.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1013
        # Reports keep coming in while the sockets are full.
        answer = await live.post_panic({"trigger_id": "cap-1", "device_id": "dev-cap-1"})
        assert answer.status_code == 202
    # The server counts a socket until its session has ended, just after the client's.
    for _ in range(100):
        if live.services.websockets.open == 0:
            break
        await asyncio.sleep(0.02)
    async with live.mdt("capital-pcr-2") as again:
        assert json.loads(await again.recv())["type"] == "snapshot"
    # The server counts a socket until its session has ended, just after the client's.
    for _ in range(100):
        if live.services.websockets.open == 0:
            break
        await asyncio.sleep(0.02)
    assert live.services.websockets.open == 0


def test_the_default_limit_leaves_descriptors_for_everything_else() -> None:
    """Soft limit raised to the hard one first; the reserve kept; a small limit halved
    rather than reduced to nothing (a host's usual 1,024 must still serve 512)."""
    default_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard
    assert limit_for(20_000) == 20_000 - RESERVED_FDS
    assert limit_for(1_024) == 512
    assert limit_for(256) == 128
    limit = ConnectionLimit(1)
    assert limit.try_acquire()
    assert not limit.try_acquire()
    limit.release()
    assert limit.try_acquire()
    with pytest.raises(ValueError, match="at least 1"):
        ConnectionLimit(0)

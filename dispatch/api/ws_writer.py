"""Several websocket messages in one write to the socket.

A live event goes to every console of its audience, and events come in bursts (one
transaction appends several). Sent through ASGI, each message is its own trip through
the ASGI layers, its own frame encoding and its own ``send`` to the kernel; a
console's writer instead drains its queue and writes the burst at once (measured: 2.0
messages per write in a 2,000-MDT run; docs/benchmarks.md, State scale, session 5).

ASGI has no "several messages" send, so the server offers it as an ASGI extension:
:class:`FrameWritingProtocol` is uvicorn's websocket protocol plus
``erss.websocket.frames`` in the scope, a function that writes whole, already encoded
server frames in one go. The frames are built once per event by websockets' own
encoder (``dispatch.hub.Outgoing.frame``) and shared by every socket, since a server's
frames are not masked. Where the extension is absent (another server) or cannot take
them now (an extension such as per-message deflate negotiated, a closing connection),
the messages go one by one through ASGI as before: same bytes on the wire either way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from fastapi import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from dispatch.hub import Outgoing

# The ASGI extension's name in the scope (vendor-prefixed, as ASGI asks of extensions).
FRAMES_EXTENSION = "erss.websocket.frames"

WriteFrames = Callable[[bytes], Awaitable[bool]]


class FrameWritingProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol, offering :data:`FRAMES_EXTENSION` to the app."""

    async def run_asgi(self) -> None:
        """Add the extension to the scope, then run the app as uvicorn does."""
        self.scope["extensions"][FRAMES_EXTENSION] = {"write": self.write_frames}
        await super().run_asgi()

    async def write_frames(self, frames: bytes) -> bool:
        """Write encoded server frames in one write, after any backpressure clears;
        False (nothing written) when the connection cannot take raw frames now."""
        await self.writable.wait()
        if (
            self.disconnected
            or self.close_sent
            or self.conn.state is not State.OPEN
            # Negotiated extensions (per-message deflate) transform each frame per
            # connection: a shared encoding would be wrong on the wire.
            or self.conn.extensions
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frames)
        return True


def frame_writer(ws: WebSocket) -> WriteFrames | None:
    """The server's one-write frame sender for this socket, if it offers one."""
    extension = ws.scope.get("extensions", {}).get(FRAMES_EXTENSION)
    return cast(WriteFrames, extension["write"]) if extension else None


async def send_all(ws: WebSocket, write: WriteFrames | None, batch: Sequence[Outgoing]) -> int:
    """Send the messages in order; returns the writes it took (1 when the frames went
    in one, else one per message)."""
    if not batch:
        return 0
    if write is not None and await write(b"".join(item.frame for item in batch)):
        return 1
    for item in batch:
        await ws.send_text(item.text)
    return len(batch)

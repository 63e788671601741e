"""How ``erss serve`` runs the app under uvicorn (the tests serve it the same way)."""

from __future__ import annotations

import gc
from typing import Any

from dispatch.api.ws_writer import FrameWritingProtocol
from dispatch.settings import Settings

WS_MAX_FRAME_BYTES = 1024 * 1024


def freeze_startup_objects() -> None:
    """Take what start-up made (modules, the app, zones, pools) out of the garbage
    collector's full passes for good.

    A full pass walks every tracked object and stops the event loop meanwhile: 0.36 s
    here with 2,100 sockets, about a quarter of it start-up objects that never die.
    Frozen objects are still freed by reference counting; only cycles among them would
    stay, and start-up objects live as long as the process anyway.
    """
    gc.collect()
    gc.freeze()


def websocket_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves this app's websockets (``erss serve`` and the tests alike)."""
    return {
        # uvicorn's own protocol, offering the one-write frame sender to the app.
        "ws": FrameWritingProtocol,
        "ws_per_message_deflate": settings.ws_per_message_deflate,
        # A client frame past this is closed with 1009 before it is read whole: the
        # largest legal one is 64 KiB (dispatch/api/ws_frames.py), and uvicorn's own
        # default of 16 MiB per frame lets a few sockets hold much of the memory.
        "ws_max_size": WS_MAX_FRAME_BYTES,
    }

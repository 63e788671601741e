"""The exchange's running parts, started beside the core's services: who we are, the
configured agencies, and the hand-off outbox's delivery loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from dispatch.exchange.agencies import Agency, load_agencies
from dispatch.exchange.eido import Origin
from dispatch.services import Services


@dataclass
class Exchange:
    """What the exchange routes need beside ``Services``."""

    services: Services
    origin: Origin
    agencies: dict[str, Agency]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running_exchange(services: Services) -> AsyncIterator[Exchange]:
    """Load the agencies and run the exchange's background loops; stop them on exit."""
    settings = services.settings
    exchange = Exchange(
        services=services,
        origin=Origin(settings.agency_id, settings.agency_name),
        agencies=load_agencies(settings.agencies_file),
    )
    try:
        yield exchange
    finally:
        for task in exchange.tasks:
            task.cancel()
        await asyncio.gather(*exchange.tasks, return_exceptions=True)

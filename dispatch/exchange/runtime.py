"""The exchange's running parts, started beside the core's services: who we are, the
configured agencies, and the hand-off outbox's delivery loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from dispatch.exchange.agencies import Agency, load_agencies
from dispatch.exchange.delivery import Delivery
from dispatch.exchange.eido import Origin
from dispatch.services import Services

log = logging.getLogger(__name__)


@dataclass
class Exchange:
    """What the exchange routes need beside ``Services``."""

    services: Services
    origin: Origin
    agencies: dict[str, Agency]
    delivery: Delivery
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running_exchange(services: Services) -> AsyncIterator[Exchange]:
    """Load the agencies and run the exchange's background loops; stop them on exit."""
    settings = services.settings
    agencies = load_agencies(settings.agencies_file)
    exchange = Exchange(
        services=services,
        origin=Origin(settings.agency_id, settings.agency_name),
        agencies=agencies,
        delivery=Delivery(services, agencies, sender=settings.agency_id),
    )
    exchange.tasks.append(asyncio.create_task(_supervised(exchange.delivery), name="exchange"))
    try:
        yield exchange
    finally:
        for task in exchange.tasks:
            task.cancel()
        await asyncio.gather(*exchange.tasks, return_exceptions=True)


async def _supervised(delivery: Delivery) -> None:
    """The delivery loop, started again should it ever end (it retries outages itself)."""
    while True:
        try:
            await delivery.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("exchange delivery loop died; starting it again")
        await asyncio.sleep(1.0)

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
from dispatch.exchange.handoffs import hand_over
from dispatch.exchange.rules import Waiting, due
from dispatch.services import Services
from dispatch.transient import OutageLog

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
    if any(a.hand_over_when is not None for a in agencies.values()):
        exchange.tasks.append(asyncio.create_task(_rules_loop(exchange), name="hand-over rules"))
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


_RULE_ACTOR = "system:hand-over-rule"


async def hand_over_by_rules(exchange: Exchange) -> int:
    """One pass of the agencies' hand-over rules: hand over what ``rules.due`` says, each
    incident under its row lock (SKIP LOCKED: another instance's pass takes the others);
    returns how many were handed over."""
    services = exchange.services
    async with services.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT i.id, i.type, i.unfilled,"
            " extract(epoch FROM now() - i.created_at)::float8 AS waited,"
            " ARRAY(SELECT h.agency_id FROM handoffs h WHERE h.incident_id = i.id) AS handed"
            " FROM incidents i WHERE cardinality(i.unfilled) > 0"
            " AND i.status IN ('new', 'queued', 'offered', 'dispatched', 'on_scene')"
            " ORDER BY i.priority, i.created_at LIMIT 50 FOR UPDATE OF i SKIP LOCKED"
        )
        waiting = [
            Waiting(
                r["id"], r["type"], frozenset(r["unfilled"]), r["waited"], frozenset(r["handed"])
            )
            for r in rows
        ]
        chosen = due(exchange.agencies, waiting)
        for incident_id, agency, rule in chosen:
            await hand_over(
                conn,
                services.settings.db_schema,
                incident_id=incident_id,
                agency=agency,
                origin=exchange.origin,
                actor=_RULE_ACTOR,
                reason=f"no {rule.no_unit_of} unit of ours for it: {agency.name}'s rule",
            )
    if chosen:
        exchange.delivery.wake()
    return len(chosen)


async def _rules_loop(exchange: Exchange) -> None:
    outage = OutageLog(log, "hand-over rules")
    while True:
        try:
            await hand_over_by_rules(exchange)
            outage.succeeded()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            outage.failed(err)
        await asyncio.sleep(exchange.services.settings.relay_poll_s * 5)

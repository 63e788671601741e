"""The exchange outbox's delivery loop: signed POSTs to other CADs until acknowledged.

Every instance runs one. A row is leased before it is sent (its next try moved past the
send's timeout), so two instances do not send it at once; should they ever, the
receiver takes a delivery once by its Idempotency-Key, which stays the same on every
try. The body is sent byte for byte as queued, and the POSTs about one incident to one agency
go one at a time in the order they were queued. Signatures are the gateways' scheme
(``gateways.signing``): HMAC-SHA256 over ``timestamp + "." + body`` with the first
secret configured for that agency, and our agency id in ``X-ERSS-Agency``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
import httpx

from dispatch import incident_log
from dispatch.events import EventType, append_event
from dispatch.exchange.agencies import Agency
from dispatch.exchange.handoff import Step, after_attempt, outcome_of
from dispatch.exchange.handoffs import report_back
from dispatch.retry import in_transaction
from dispatch.services import Services
from dispatch.transient import OutageLog
from gateways.signing import sign

log = logging.getLogger(__name__)

_BATCH = 20
_EVENTS = {
    "acknowledged": EventType.INCIDENT_HANDOFF_ACKNOWLEDGED,
    "refused": EventType.INCIDENT_HANDOFF_REFUSED,
    "escalated": EventType.INCIDENT_HANDOFF_ESCALATED,
}


def signed_headers(*, sender: str, secret: str, body: bytes, key: str) -> dict[str, str]:
    """The headers of a signed exchange POST (the receiver's check: docs/exchange.md)."""
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-ERSS-Agency": sender,
        "X-ERSS-Timestamp": timestamp,
        "X-ERSS-Signature": sign(secret, timestamp, body),
        "Idempotency-Key": key,
    }


class Delivery:
    """Sends what is due in the exchange outbox; run ``run()`` as a background task."""

    def __init__(self, services: Services, agencies: dict[str, Agency], *, sender: str) -> None:
        self._services = services
        self._agencies = agencies
        self._sender = sender
        settings = services.settings
        self._poll_s = settings.relay_poll_s
        self._timeout_s = settings.handoff_timeout_s
        self._wake = asyncio.Event()
        self._outage = OutageLog(log, "exchange delivery")

    def wake(self) -> None:
        """Look at the outbox now (something was just queued)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver forever; an outage of PostgreSQL or of a receiver is waited out."""
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            while True:
                self._wake.clear()
                try:
                    await in_transaction(self._services.pool, report_back)
                    sent = await self.deliver_due(client)
                    self._outage.succeeded(proves=("postgres",))
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    self._outage.failed(err)
                    sent = 0
                if sent < _BATCH:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll_s):
                            await self._wake.wait()

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Lease and send one batch of due rows; returns how many were tried."""
        rows = await self._services.pool.fetch(
            "UPDATE exchange_outbox SET next_attempt_at = now() + make_interval(secs => $1)"
            " WHERE id IN (SELECT id FROM exchange_outbox o WHERE state = 'pending'"
            " AND next_attempt_at <= now()"
            # In order per agency and incident: on scene never overtakes accepted.
            " AND NOT EXISTS (SELECT 1 FROM exchange_outbox p WHERE p.state = 'pending'"
            " AND p.agency_id = o.agency_id AND p.incident_id IS NOT DISTINCT FROM"
            " o.incident_id AND p.id < o.id)"
            " ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)"
            " RETURNING id, agency_id, path, body, idempotency_key, handoff_id, incident_id,"
            " attempts",
            self._timeout_s * 3,
            _BATCH,
        )
        await asyncio.gather(*(self._deliver(client, row) for row in rows))
        return len(rows)

    async def _deliver(self, client: httpx.AsyncClient, row: asyncpg.Record) -> None:
        agency = self._agencies.get(row["agency_id"])
        status_code: int | None = None
        answer = ""
        if agency is None:
            # Removed from the configuration since it was queued: nobody to send it to.
            answer = f"agency {row['agency_id']} is no longer configured"
            status_code = 410
        else:
            body = bytes(row["body"])
            headers = signed_headers(
                sender=self._sender,
                secret=agency.secrets[0],
                body=body,
                key=row["idempotency_key"],
            )
            try:
                response = await client.post(
                    agency.endpoint + row["path"], content=body, headers=headers
                )
                status_code = response.status_code
                answer = _detail(response)
            except httpx.HTTPError as err:
                # The type only: an httpx message can carry the endpoint's URL.
                answer = type(err).__name__
        await in_transaction(
            self._services.pool, lambda conn: self._record(conn, row, status_code, answer)
        )

    async def _record(
        self, conn: asyncpg.Connection, row: asyncpg.Record, status_code: int | None, answer: str
    ) -> None:
        settings = self._services.settings
        attempts = row["attempts"] + 1
        step = after_attempt(
            outcome_of(status_code),
            attempts,
            max_attempts=settings.handoff_max_attempts,
            base_s=settings.handoff_retry_base_s,
            cap_s=settings.handoff_retry_cap_s,
            spread=(row["id"] * 0.618) % 1.0,
        )
        error = (
            None
            if step.state == "delivered"
            else (f"HTTP {status_code}: " if status_code else "") + answer
        )
        await conn.execute(
            "UPDATE exchange_outbox SET state = $2, attempts = $3, last_error = $4,"
            " next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at"
            " ELSE now() + make_interval(secs => $5) END,"
            " delivered_at = CASE WHEN $2 = 'delivered' THEN now() END WHERE id = $1",
            row["id"],
            step.state,
            attempts,
            error[:500] if error else None,
            step.retry_in_s,
        )
        if row["handoff_id"] is None:
            if step.state in ("refused", "escalated"):
                log.warning(
                    "status update to %s given up (%s): %s",
                    row["agency_id"],
                    step.state,
                    error,
                    extra={"incident_id": row["incident_id"]},
                )
            return
        await self._handoff_step(conn, row, step, attempts, status_code, error)

    async def _handoff_step(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        step: Step,
        attempts: int,
        status_code: int | None,
        error: str | None,
    ) -> None:
        schema = self._services.settings.db_schema
        actor = "exchange"
        common: dict[str, Any] = {"handoff_id": row["handoff_id"], "agency": row["agency_id"]}
        if attempts == 1:
            await append_event(
                conn,
                schema,
                EventType.INCIDENT_HANDOFF_SENT,
                actor=actor,
                incident_id=row["incident_id"],
                data={**common, "answer": status_code, "error": error},
            )
        if step.event is None:
            return
        # Only a pending hand-off moves: a status update may have acknowledged it first.
        moved = await conn.fetchval(
            "UPDATE handoffs SET state = $2, updated_at = now() WHERE id = $1"
            " AND state = 'pending' RETURNING true",
            row["handoff_id"],
            "acknowledged" if step.event == "acknowledged" else step.state,
        )
        if not moved:
            return  # already told (a repeat delivery, or the other CAD's status came first)
        await append_event(
            conn,
            schema,
            _EVENTS[step.event],
            actor=actor,
            incident_id=row["incident_id"],
            data={**common, "attempts": attempts, "answer": status_code, "error": error},
        )
        if step.event in ("refused", "escalated"):
            what = (
                "refused" if step.event == "refused" else f"was not reached after {attempts} tries"
            )
            await incident_log.escalate(
                conn,
                self._services.dispatcher.schema,
                row["incident_id"],
                actor=actor,
                reason=f"hand-off to {row['agency_id']} {what} ({error}); handle it here or"
                " hand it over again",
            )


def _detail(response: httpx.Response) -> str:
    """The receiver's own words on a refusal (its error body's detail), shortened."""
    if response.is_success:
        return ""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail)[:200] if detail else response.text[:200]

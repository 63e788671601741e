"""Idempotency keys: a gateway's retry gets the original answer, never a second incident.

The key row is inserted in the same transaction as the incident, so either both exist
or neither does. A concurrent retry blocks on the key's unique index until the first
delivery commits (then it reads the stored answer) or rolls back (then it proceeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from dispatch.errors import IdempotencyConflict


async def reserve(
    conn: asyncpg.Connection,
    *,
    gateway_id: str,
    key: str,
    body_sha256: str,
    delivery_id: str,
    then_lock: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Claim the key and the delivery in the current transaction; returns the stored
    answer of an earlier delivery with the same key and body, or with the same
    ``delivery_id`` (a replay under a new key), or None when this delivery is the first.

    When it is the first, the transaction also takes the advisory locks named in
    ``then_lock``, in that order, in the same round trip (a replay takes none).

    Raises IdempotencyConflict when the key was used with a different body.
    """
    # Either unique index (key, or delivery id) turns the insert into a no-op; a
    # concurrent first delivery holding either makes this wait for its commit. CASE
    # takes the locks only once the insert is known to have happened.
    inserted = await conn.fetchval(
        "WITH ins AS (INSERT INTO idempotency_keys (gateway_id, key, body_sha256, delivery_id)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true)"
        " SELECT CASE WHEN EXISTS (SELECT 1 FROM ins) THEN (SELECT count(*) FROM"
        " (SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest($5::text[])"
        " WITH ORDINALITY AS l(k, n) ORDER BY n) AS taken) >= 0 END",
        gateway_id,
        key,
        body_sha256,
        delivery_id,
        list(then_lock),
    )
    if inserted:
        return None
    row = await conn.fetchrow(
        "SELECT key, body_sha256, response FROM idempotency_keys"
        " WHERE gateway_id = $1 AND (key = $2 OR delivery_id = $3)"
        " ORDER BY key = $2 DESC LIMIT 1",
        gateway_id,
        key,
        delivery_id,
    )
    if row["key"] == key and row["body_sha256"] != body_sha256:
        raise IdempotencyConflict(key)
    stored: dict[str, Any] = row["response"]
    return stored


async def complete(
    conn: asyncpg.Connection, *, gateway_id: str, key: str, response: dict[str, Any]
) -> None:
    """Store the answer given to the first delivery."""
    await conn.execute(
        "UPDATE idempotency_keys SET status_code = 202, response = $3"
        " WHERE gateway_id = $1 AND key = $2",
        gateway_id,
        key,
        response,
    )

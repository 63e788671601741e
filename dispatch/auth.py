"""Credentials: operator and unit bearer tokens, gateway shared secrets."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import asyncpg

from dispatch.errors import Unauthorized


def hash_token(token: str) -> str:
    """What is stored for a bearer token: its sha256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret() -> str:
    """A fresh random token or shared secret."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an operator, or a unit's MDT."""

    kind: str  # "operator" | "unit"
    name: str
    # An operator's desk: the zones they watch, or None for the whole city.
    zones: frozenset[str] | None = None

    @property
    def actor(self) -> str:
        """How this caller appears in the event log."""
        return f"{self.kind}:{self.name}"


async def authenticate(pool: asyncpg.Pool, token: str | None, *, kind: str) -> Principal:
    """The operator or unit owning ``token``; Unauthorized otherwise."""
    if not token:
        raise Unauthorized("a bearer token is required (Authorization header or ?token=)")
    if kind == "operator":
        query = "SELECT name, zones FROM operators WHERE token_hash = $1"
    else:
        query = "SELECT id AS name, NULL::text[] AS zones FROM units WHERE token_hash = $1"
    row = await pool.fetchrow(query, hash_token(token))
    if row is None:
        raise Unauthorized(f"the token is not a valid {kind} token")
    zones = frozenset(row["zones"]) if row["zones"] is not None else None
    return Principal(kind, row["name"], zones)


class GatewaySecrets:
    """Gateway secrets from PostgreSQL, cached briefly so a signed POST costs no query."""

    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 10.0) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[str, str]] = {}
        self._loaded_at = float("-inf")

    async def lookup(self, gateway_id: str) -> tuple[str, str] | None:
        """(channel, secret) of a gateway, or None if it is not registered."""
        now = time.monotonic()
        stale = now - self._loaded_at > self._ttl_s
        # An unknown id reloads at most once a second, so a flood of forged gateway ids
        # cannot turn into a flood of queries.
        if stale or (gateway_id not in self._cache and now - self._loaded_at > 1.0):
            rows = await self._pool.fetch("SELECT id, channel, secret FROM gateways")
            self._cache = {r["id"]: (r["channel"], r["secret"]) for r in rows}
            self._loaded_at = now
        return self._cache.get(gateway_id)

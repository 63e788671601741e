"""Credentials: operator and unit bearer tokens, gateway shared secrets."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from dispatch.errors import ConfigurationError, Unauthorized


def hash_token(token: str) -> str:
    """What is stored for a bearer token: its sha256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret() -> str:
    """A fresh random token or shared secret."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an operator, a unit's MDT, or a SHOUT volunteer."""

    kind: str  # "operator" | "unit" | "volunteer"
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
        raise Unauthorized(
            "a bearer token is required: an Authorization: Bearer header (REST and"
            ' sockets), or on a socket a first message {"type": "auth", "token": ...}'
        )
    if kind == "operator":
        query = "SELECT name, zones FROM operators WHERE token_hash = $1"
    elif kind == "volunteer":
        # A volunteer's token opens the volunteer socket only: every other route and
        # socket asks for another kind, and a volunteer is in neither of those tables.
        query = "SELECT id AS name, NULL::text[] AS zones FROM volunteers WHERE token_hash = $1"
    else:
        query = "SELECT id AS name, NULL::text[] AS zones FROM units WHERE token_hash = $1"
    row = await pool.fetchrow(query, hash_token(token))
    if row is None:
        raise Unauthorized(f"the token is not a valid {kind} token")
    zones = frozenset(row["zones"]) if row["zones"] is not None else None
    return Principal(kind, row["name"], zones)


@dataclass(frozen=True, slots=True)
class Gateway:
    """A registered gateway: the endpoint it may post to and its valid secrets.

    ``aml_keys``: for an SMS gateway, the keys its AML-over-HTTPS bodies' own ``hmac``
    is checked with (none configured: not checked).
    """

    id: str
    channel: str
    # Out of the repr: a Gateway in a log line or a traceback must not carry its secrets.
    secrets: tuple[str, ...] = field(repr=False)
    aml_keys: tuple[str, ...] = field(default=(), repr=False)


class GatewaySecrets:
    """Gateway secrets from PostgreSQL, cached briefly so a signed POST costs no query."""

    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 10.0) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._cache: dict[str, Gateway] = {}
        self._loaded_at = float("-inf")

    async def lookup(self, gateway_id: str) -> Gateway | None:
        """The gateway of that id, or None if it is not registered."""
        now = time.monotonic()
        stale = now - self._loaded_at > self._ttl_s
        # An unknown id reloads at most once a second, so a flood of forged gateway ids
        # cannot turn into a flood of queries.
        if stale or (gateway_id not in self._cache and now - self._loaded_at > 1.0):
            rows = await self._pool.fetch("SELECT id, channel, secrets, aml_keys FROM gateways")
            self._cache = {
                r["id"]: Gateway(r["id"], r["channel"], tuple(r["secrets"]), tuple(r["aml_keys"]))
                for r in rows
            }
            self._loaded_at = now
        return self._cache.get(gateway_id)


async def register_gateways(conn: asyncpg.Connection, gateways: list[Gateway]) -> None:
    """Insert or replace gateways and their secrets (the configured list is the truth)."""
    await conn.executemany(
        "INSERT INTO gateways (id, channel, secrets, aml_keys) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (id) DO UPDATE SET channel = excluded.channel, secrets = excluded.secrets,"
        " aml_keys = excluded.aml_keys",
        [(g.id, g.channel, list(g.secrets), list(g.aml_keys)) for g in gateways],
    )


def load_gateways_file(path: Path) -> list[Gateway]:
    """Gateways from a JSON file; ConfigurationError naming the problem otherwise."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigurationError(f"gateways file {path}: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigurationError(f"gateways file {path}: expected an object of gateways")
    gateways: list[Gateway] = []
    for gateway_id, spec in raw.items():
        channel = spec.get("channel") if isinstance(spec, dict) else None
        secrets = spec.get("secrets") if isinstance(spec, dict) else None
        if channel not in ("telecom", "sms", "panic", "vehicle"):
            raise ConfigurationError(
                f"gateways file {path}: {gateway_id!r} needs channel telecom, sms, panic or vehicle"
            )
        if (
            not isinstance(secrets, list)
            or not secrets
            or not all(isinstance(x, str) and len(x) >= 16 for x in secrets)
        ):
            raise ConfigurationError(
                f"gateways file {path}: {gateway_id!r} needs a list of secrets of 16 or"
                " more characters"
            )
        aml_keys = spec.get("aml_keys", [])
        if not isinstance(aml_keys, list) or not all(isinstance(k, str) and k for k in aml_keys):
            raise ConfigurationError(
                f"gateways file {path}: {gateway_id!r} aml_keys must be a list of keys"
            )
        if aml_keys and channel != "sms":
            raise ConfigurationError(
                f"gateways file {path}: {gateway_id!r} has aml_keys, but only an sms gateway"
                " receives AML over HTTPS"
            )
        gateways.append(Gateway(gateway_id, channel, tuple(secrets), tuple(aml_keys)))
    return gateways

"""The demo city's SHOUT volunteers: police-verified, one in each central
jurisdiction, placed at seeded points so every load puts them in the same places."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from dispatch.auth import hash_token
from geo.points import GeoPoint
from geo.zones import Zone

# (zone, name, languages): fictional people.
DEMO_VOLUNTEERS = (
    ("capital", "Sunita Mohanty", ("or", "en")),
    ("kharavel-nagar", "Pradeep Sahoo", ("or", "hi")),
    ("sahidnagar", "Lipika Das", ("or", "en", "hi")),
    ("nayapalli", "Anil Behera", ("or",)),
    ("laxmisagar", "Rashmi Patnaik", ("or", "en")),
    ("lingaraj", "Debasis Rout", ("or", "hi")),
    ("chandrasekharpur", "Priyanka Nayak", ("or", "en")),
    ("infocity", "Farhan Ali", ("hi", "en", "ur")),
)


@dataclass(frozen=True, slots=True)
class DemoVolunteer:
    """A volunteer of the demo city."""

    id: str
    name: str
    zone_id: str
    languages: tuple[str, ...]
    position: GeoPoint


def demo_volunteers(
    zones: list[Zone], point_inside: Callable[[Zone, random.Random], GeoPoint]
) -> list[DemoVolunteer]:
    """The demo's volunteers, deterministically placed inside their zones."""
    by_id = {z.id: z for z in zones}
    found: list[DemoVolunteer] = []
    for zone_id, name, languages in DEMO_VOLUNTEERS:
        zone = by_id.get(zone_id)
        if zone is None:
            continue
        rng = random.Random(f"erss-demo-volunteer:{zone_id}")  # noqa: S311 (placement)
        found.append(
            DemoVolunteer(f"vol-demo-{zone_id}", name, zone_id, languages, point_inside(zone, rng))
        )
    return found


async def load_demo_volunteers(
    conn: asyncpg.Connection, volunteers: list[DemoVolunteer], token_of: Callable[[str], str]
) -> dict[str, str]:
    """Insert (or refresh the tokens of) the demo volunteers; returns ``{id: token}``.

    They start unavailable, as a real volunteer does until their app connects and says
    otherwise: a demo volunteer client sends ``availability`` and is alerted from then
    on. Their position is set (refreshed to now on every load), so that is all it needs
    to send. One already there keeps its availability.
    """
    tokens: dict[str, str] = {}
    for n, volunteer in enumerate(volunteers, start=1):
        token = token_of(volunteer.id)
        await conn.execute(
            "INSERT INTO volunteers (id, name, phone, home_area, languages, verified,"
            " verified_by, verified_at, available, lat, lon, position_at, token_hash,"
            " registered_by) VALUES ($1, $2, $3, $4, $5, true, 'demo', now(), false, $6, $7,"
            " now(), $8, 'demo') ON CONFLICT (id) DO UPDATE SET token_hash ="
            " excluded.token_hash, lat = excluded.lat, lon = excluded.lon, position_at = now()",
            volunteer.id,
            volunteer.name,
            f"+91 90000 {n:05d}",  # fictional
            volunteer.zone_id,
            list(volunteer.languages),
            volunteer.position.lat,
            volunteer.position.lon,
            hash_token(token),
        )
        tokens[volunteer.id] = token
    return tokens

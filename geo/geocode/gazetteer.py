"""The offline gazetteer: parsing and loading ``config/gazetteer.json`` (hand-entered
Bhubaneswar places, see config/README.md) and the geocoder that searches it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Final, TypeGuard

from geo.geocode.matching import DEFAULT_MIN_SCORE, PlaceMatcher, normalize
from geo.geocode.places import DEFAULT_RADIUS_M, PLACE_KINDS, Place
from geo.geocode.protocol import GeocodeResult
from geo.location import InvalidLocation, Location, location_from_fix

GAZETTEER_FILE: Final = "gazetteer.json"
METHOD_GAZETTEER: Final = "geocoded:gazetteer"


class GazetteerError(ValueError):
    """A gazetteer entry that cannot be used, named so the file can be fixed."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"gazetteer entry {entry}: {reason}")
        self.entry = entry
        self.reason = reason


def parse_gazetteer(data: object) -> list[Place]:
    """Validate a gazetteer (a JSON list of entries) into places.

    An entry is ``{"id", "name", "kind", "lat", "lon", "radius_m"?, "aliases"?}``; ``kind``
    is one of PLACE_KINDS; a missing ``radius_m`` takes the kind's DEFAULT_RADIUS_M.
    Raises GazetteerError naming the first unusable entry.
    """
    if not isinstance(data, list) or not data:
        raise GazetteerError("<root>", "expected a non-empty JSON list of places")
    places: list[Place] = []
    seen: set[str] = set()
    for index, entry in enumerate(data):
        label = f"#{index}"
        if not isinstance(entry, dict):
            raise GazetteerError(label, "is not an object")
        label = f"#{index} ({entry.get('id') or entry.get('name') or 'unnamed'})"
        unknown = set(entry) - {"id", "name", "kind", "lat", "lon", "radius_m", "aliases"}
        if unknown:
            raise GazetteerError(label, f"unknown fields {sorted(unknown)}")
        place_id, name, kind = entry.get("id"), entry.get("name"), entry.get("kind")
        if not isinstance(place_id, str) or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", place_id):
            raise GazetteerError(label, "id must be a lower-case slug like 'kalpana-square'")
        if place_id in seen:
            raise GazetteerError(label, f"duplicate id {place_id!r}")
        if not isinstance(name, str) or not normalize(name):
            raise GazetteerError(label, "name must be text naming the place")
        if kind not in PLACE_KINDS:
            raise GazetteerError(label, f"kind {kind!r} is not one of {list(PLACE_KINDS)}")
        aliases = entry.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise GazetteerError(label, "aliases must be a list of strings")
        radius, lat, lon = (
            entry.get("radius_m", DEFAULT_RADIUS_M[kind]),
            entry.get("lat"),
            entry.get("lon"),
        )
        if not _is_number(radius) or radius <= 0:
            raise GazetteerError(label, f"radius_m {radius!r} is not a positive distance")
        if not _is_number(lat) or not _is_number(lon):
            raise GazetteerError(label, "lat and lon must be numbers (WGS84 degrees)")
        try:
            location = location_from_fix(lat=lat, lon=lon, radius_m=radius, method=METHOD_GAZETTEER)
        except InvalidLocation as err:
            raise GazetteerError(label, str(err)) from err
        seen.add(place_id)
        places.append(
            Place(
                id=place_id,
                name=name,
                kind=kind,
                point=location.point,
                radius_m=float(radius),
                aliases=tuple(aliases),
            )
        )
    return places


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_gazetteer(path: Path | None = None) -> list[Place]:
    """The places of a gazetteer file; by default the packaged config/gazetteer.json.

    Raises GazetteerError for unusable content, OSError for an unreadable file.
    """
    if path is None:
        text = resources.files("config").joinpath(GAZETTEER_FILE).read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise GazetteerError("<root>", f"not JSON: {err}") from err
    return parse_gazetteer(data)


class GazetteerGeocoder:
    """The offline geocoder: fuzzy search of a gazetteer. Never raises GeocodeError."""

    def __init__(self, places: Iterable[Place], *, min_score: float = DEFAULT_MIN_SCORE) -> None:
        self._matcher = PlaceMatcher(places)
        self._min_score = min_score

    async def geocode(self, query: str, *, limit: int = 5) -> list[GeocodeResult]:
        """Matching places, best first (see PlaceMatcher.search)."""
        # Matching is pure-Python CPU work: a few milliseconds for a short phrase, tens
        # for a long rambling one. A worker thread keeps the event loop (websockets,
        # gateways) responsive meanwhile.
        hits = await asyncio.to_thread(
            self._matcher.search, query, limit=limit, min_score=self._min_score
        )
        return [
            GeocodeResult(
                name=place.name,
                kind=place.kind,
                location=Location(
                    point=place.point, radius_m=place.radius_m, method=METHOD_GAZETTEER
                ),
                score=score,
                source="gazetteer",
            )
            for place, score in hits
        ]

"""A place of the gazetteer: its name, kind, position and the names callers use for it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

from geo.points import GeoPoint

PlaceKind = Literal[
    "landmark",
    "locality",
    "police_station",
    "hospital",
    "temple",
    "market",
    "bus_station",
    "railway_station",
    "airport",
    "college",
]
PLACE_KINDS: Final[tuple[str, ...]] = get_args(PlaceKind)

# The uncertainty radius of a match when an entry gives none: roughly the size of such a
# place. A gazetteer entry sets ``radius_m`` to add the uncertainty of its coordinates.
DEFAULT_RADIUS_M: Final[Mapping[str, float]] = {
    "landmark": 100.0,
    "locality": 700.0,
    "police_station": 100.0,
    "hospital": 150.0,
    "temple": 100.0,
    "market": 150.0,
    "bus_station": 150.0,
    "railway_station": 200.0,
    "airport": 500.0,
    "college": 300.0,
}


@dataclass(frozen=True, slots=True)
class Place:
    """A gazetteer entry: a named place, its position and the names callers use for it."""

    id: str
    name: str
    kind: PlaceKind
    point: GeoPoint
    radius_m: float
    aliases: tuple[str, ...] = ()

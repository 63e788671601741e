"""What every geocoder is: the ``Geocoder`` protocol, the candidate it answers with and
the error it raises when a service it depends on fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from geo.location import Location


class GeocodeError(Exception):
    """A geocoding service failed; the message says what to check."""


@dataclass(frozen=True, slots=True)
class GeocodeResult:
    """One candidate place for a query.

    ``location.method`` is ``geocoded:gazetteer`` or ``geocoded:nominatim``;
    ``location.radius_m`` is the uncertainty of the match in metres. ``score`` (0..1) is
    how well the query's words match ``name``; ``source`` names the geocoder.
    """

    name: str
    kind: str
    location: Location
    score: float
    source: Literal["gazetteer", "nominatim"]


class Geocoder(Protocol):
    """Turns free text into ranked candidate places."""

    async def geocode(self, query: str, *, limit: int = 5) -> list[GeocodeResult]:
        """At most ``limit`` candidates, best first; an empty list when none is good.

        Raises ValueError when ``limit`` < 1, and GeocodeError when a service the
        geocoder depends on fails.
        """
        ...

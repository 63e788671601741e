"""Geocoding: from the words a caller says to candidate places with an uncertainty radius.

A caller to 112 rarely gives a postal address. They name a square, a temple or a
neighbourhood the way they say it: "Kalpana chhak ke paas", "near Sahid Nagar thana",
"Jayadev Bihar". This package turns such a phrase into *ranked candidates* for the
operator to choose from. It never picks one on the operator's behalf: a wrong guess
sends an ERV to the wrong place (DESIGN invariant 7, "never a guessed location").

Every geocoder follows the ``Geocoder`` protocol:

- ``GazetteerGeocoder`` works offline from ``config/gazetteer.json`` (hand-entered
  Bhubaneswar places, see config/README.md). Its matcher ignores case, diacritics,
  punctuation and filler words ("near", "opposite", "ke paas"), folds common Indian
  transliteration variants (Khandgiri/Khandagiri, Sahid/Shahid/Saheed, Vihar/Bihar) and
  tolerates typos, using only the standard library's ``difflib``.
- ``NominatimGeocoder`` asks a self-hosted Nominatim server through geopy, bounded to the
  city's bounding box.
- ``FallbackGeocoder`` asks one geocoder and falls back to another when the first fails
  or finds nothing; ``build_geocoder`` assembles Nominatim-then-gazetteer, or the
  gazetteer alone when no Nominatim URL is configured.

The package's modules: ``protocol`` (the protocol, its result and error), ``places``
(a gazetteer entry), ``matching`` (normalising and matching what callers say),
``gazetteer``, ``nominatim``; this module holds the chaining and re-exports the rest.

Scores are in 0..1 and mean the same for every source: how well the words of the query
match the name of the place (1.0: the same words, up to spelling variants and fillers).
A score says nothing about how precise the place is; that is ``location.radius_m``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from geo.geocode.gazetteer import (
    GAZETTEER_FILE,
    METHOD_GAZETTEER,
    GazetteerError,
    GazetteerGeocoder,
    load_gazetteer,
    parse_gazetteer,
)
from geo.geocode.matching import (
    DEFAULT_MIN_SCORE,
    MAX_QUERY_TOKENS,
    PlaceMatcher,
    match_score,
    normalize,
    phonetic_key,
)
from geo.geocode.nominatim import (
    METHOD_NOMINATIM,
    NOMINATIM_MIN_RADIUS_M,
    USER_AGENT,
    BoundingBox,
    NominatimGeocoder,
)
from geo.geocode.places import DEFAULT_RADIUS_M, PLACE_KINDS, Place, PlaceKind
from geo.geocode.protocol import GeocodeError, Geocoder, GeocodeResult
from geo.zones import Zone

__all__ = [
    "DEFAULT_MIN_SCORE",
    "DEFAULT_RADIUS_M",
    "GAZETTEER_FILE",
    "MAX_QUERY_TOKENS",
    "METHOD_GAZETTEER",
    "METHOD_NOMINATIM",
    "NOMINATIM_MIN_RADIUS_M",
    "PLACE_KINDS",
    "USER_AGENT",
    "BoundingBox",
    "FallbackGeocoder",
    "GazetteerError",
    "GazetteerGeocoder",
    "GeocodeError",
    "GeocodeResult",
    "Geocoder",
    "NominatimGeocoder",
    "Place",
    "PlaceKind",
    "PlaceMatcher",
    "build_geocoder",
    "load_gazetteer",
    "match_score",
    "normalize",
    "parse_gazetteer",
    "phonetic_key",
]

_log = logging.getLogger(__name__)

# --- Chaining ---------------------------------------------------------------------------


class FallbackGeocoder:
    """Ask ``primary``; when it fails or finds nothing, answer from ``fallback``.

    A failure of the primary is logged, not raised: an operator locating a caller
    gets the fallback's candidates rather than an error.
    """

    def __init__(self, primary: Geocoder, fallback: Geocoder) -> None:
        self.primary = primary
        self.fallback = fallback

    async def geocode(self, query: str, *, limit: int = 5) -> list[GeocodeResult]:
        """The primary's results, else the fallback's. Raises ValueError when
        ``limit`` < 1, and GeocodeError only from the fallback."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        try:
            results = await self.primary.geocode(query, limit=limit)
        except GeocodeError as err:
            _log.warning("%s; answering from the fallback geocoder", err)
            results = []
        if results:
            return results
        return await self.fallback.geocode(query, limit=limit)


def build_geocoder(
    *,
    nominatim_url: str | None,
    zones: Iterable[Zone],
    places: Iterable[Place] | None = None,
    timeout_s: float = 5.0,
) -> Geocoder:
    """The geocoder the settings ask for.

    With no ``nominatim_url``: the gazetteer (``places``, by default the packaged
    config/gazetteer.json). With one: Nominatim bounded to the zones' box, falling back
    to the gazetteer. Raises GeocodeError for a malformed URL and GazetteerError for a
    broken gazetteer, so a misconfigured server fails at start-up, not on a call.
    """
    gazetteer = GazetteerGeocoder(load_gazetteer() if places is None else places)
    if not nominatim_url:
        return gazetteer
    nominatim = NominatimGeocoder(
        nominatim_url, viewbox=BoundingBox.around(zones), timeout_s=timeout_s
    )
    return FallbackGeocoder(nominatim, gazetteer)

"""Geocoding through a (self-hosted) Nominatim server, bounded to the city's box."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from geopy.exc import GeopyError
from geopy.geocoders import Nominatim

from geo.distance import distance_m
from geo.geocode.matching import match_score
from geo.geocode.protocol import GeocodeError, GeocodeResult
from geo.location import Location
from geo.points import GeoPoint
from geo.zones import Zone

# The logger this warning had before geo/geocode.py became a package, so that log
# filters and dashboards keyed on it still see it.
_log = logging.getLogger("geo.geocode")

USER_AGENT: Final = "erss-dispatch"
METHOD_NOMINATIM: Final = "geocoded:nominatim"


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """A lat/lon box, as Nominatim's viewbox."""

    south: float
    west: float
    north: float
    east: float

    @classmethod
    def around(cls, zones: Iterable[Zone]) -> BoundingBox:
        """The smallest box holding every zone. Raises ValueError for no zones."""
        bounds = [zone.geometry.bounds for zone in zones]
        if not bounds:
            raise ValueError("no zones to bound")
        return cls(
            south=min(b[1] for b in bounds),
            west=min(b[0] for b in bounds),
            north=max(b[3] for b in bounds),
            east=max(b[2] for b in bounds),
        )


# Nominatim's bounding box of a building or a node is a few metres; an answer is no more
# precise than the address interpolation behind it, so radii never go below this.
NOMINATIM_MIN_RADIUS_M: Final = 50.0


class NominatimGeocoder:
    """geopy's Nominatim client against a (self-hosted) Nominatim server.

    Results are restricted to ``viewbox`` (``bounded=1``) and to ``country_codes``.
    geopy is blocking, so each query runs in a worker thread.
    """

    def __init__(
        self,
        url: str,
        *,
        viewbox: BoundingBox,
        timeout_s: float = 5.0,
        country_codes: str = "in",
        language: str = "en",
    ) -> None:
        """Raises GeocodeError when ``url`` is not an http(s) URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise GeocodeError(
                f"Nominatim URL {url!r} is not an http(s) URL; give the server's base URL,"
                " e.g. http://nominatim.internal:8080 (ERSS_NOMINATIM_URL)"
            )
        self.url = url
        self._viewbox = viewbox
        self._country_codes = country_codes
        self._language = language
        # geopy appends /search to scheme://domain, so a path prefix (a server behind
        # a reverse proxy at /nominatim) goes into the domain.
        self._client = Nominatim(
            domain=parts.netloc + parts.path.rstrip("/"),
            scheme=parts.scheme,
            user_agent=USER_AGENT,
            timeout=timeout_s,
        )

    async def geocode(self, query: str, *, limit: int = 5) -> list[GeocodeResult]:
        """Nominatim's answers inside the viewbox, best first by score.

        Raises ValueError when ``limit`` < 1 and GeocodeError when the server cannot be
        reached, times out or answers with an error.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        text = " ".join(query.split())
        if not text:
            return []
        box = self._viewbox
        try:
            found = await asyncio.to_thread(
                self._client.geocode,
                text,
                exactly_one=False,
                limit=limit,
                viewbox=((box.south, box.west), (box.north, box.east)),
                bounded=True,
                country_codes=self._country_codes,
                language=self._language,
            )
        except GeopyError as err:
            raise GeocodeError(
                f"Nominatim at {self.url} failed ({type(err).__name__}: {err}); check that"
                " the server is running and reachable from this host, or unset"
                " ERSS_NOMINATIM_URL to geocode from the offline gazetteer only"
            ) from err
        results = [r for r in (self._result(text, item) for item in found or ()) if r]
        # Stable: equal scores keep Nominatim's own order (its importance ranking).
        results.sort(key=lambda r: -r.score)
        return results[:limit]

    def _result(self, query: str, item: Any) -> GeocodeResult | None:
        raw: Mapping[str, Any] = item.raw if isinstance(item.raw, Mapping) else {}
        display = str(raw.get("display_name") or item.address or "")
        name = str(raw.get("name") or display.split(",")[0]).strip() or display
        try:
            point = GeoPoint(lat=float(item.latitude), lon=float(item.longitude))
        except (TypeError, ValueError) as err:
            # One bad answer must not hide the others; it is logged for the server's
            # operator.
            _log.warning("Nominatim answer %r has no usable position: %s", display, err)
            return None
        # The best of the short name and each part of the full address: a query like
        # "plot 12, Saheed Nagar" matches the part that names the locality.
        score = max(
            (match_score(query, part) for part in (name, *display.split(","))),
            default=0.0,
        )
        kind = str(raw.get("addresstype") or raw.get("type") or "place")
        return GeocodeResult(
            name=display or name,
            kind=kind,
            location=Location(
                point=point, radius_m=_radius_of(point, raw), method=METHOD_NOMINATIM
            ),
            score=score,
            source="nominatim",
        )


def _radius_of(point: GeoPoint, raw: Mapping[str, Any]) -> float:
    """The distance from the point to the farthest corner of Nominatim's bounding box."""
    box = raw.get("boundingbox")
    if not isinstance(box, Sequence) or isinstance(box, str) or len(box) != 4:
        return NOMINATIM_MIN_RADIUS_M
    try:
        south, north, west, east = (float(v) for v in box)
        corners = [GeoPoint(lat=lat, lon=lon) for lat in (south, north) for lon in (west, east)]
    except (TypeError, ValueError):
        return NOMINATIM_MIN_RADIUS_M
    radius = max(distance_m(point, corner) for corner in corners)
    return max(NOMINATIM_MIN_RADIUS_M, math.ceil(radius))

"""Geocoding: from the words a caller says to candidate places with an uncertainty radius.

A caller to 112 rarely gives a postal address. They name a square, a temple or a
neighbourhood the way they say it: "Kalpana chhak ke paas", "near Sahid Nagar thana",
"Jayadev Bihar". This module turns such a phrase into *ranked candidates* for the
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

Scores are in 0..1 and mean the same for every source: how well the words of the query
match the name of the place (1.0: the same words, up to spelling variants and fillers).
A score says nothing about how precise the place is; that is ``location.radius_m``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeGuard, get_args
from urllib.parse import urlsplit

from geopy.exc import GeopyError
from geopy.geocoders import Nominatim

from geo.distance import distance_m
from geo.location import InvalidLocation, Location, location_from_fix
from geo.points import GeoPoint
from geo.zones import Zone

_log = logging.getLogger(__name__)

GAZETTEER_FILE: Final = "gazetteer.json"
USER_AGENT: Final = "erss-dispatch"
METHOD_GAZETTEER: Final = "geocoded:gazetteer"
METHOD_NOMINATIM: Final = "geocoded:nominatim"

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


class GeocodeError(Exception):
    """A geocoding service failed; the message says what to check."""


class GazetteerError(ValueError):
    """A gazetteer entry that cannot be used, named so the file can be fixed."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"gazetteer entry {entry}: {reason}")
        self.entry = entry
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Place:
    """A gazetteer entry: a named place, its position and the names callers use for it."""

    id: str
    name: str
    kind: PlaceKind
    point: GeoPoint
    radius_m: float
    aliases: tuple[str, ...] = ()


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


# --- Normalising what callers say -------------------------------------------------------

# Words around a place name that locate relative to it or are just speech: English,
# Hindi and Odia as Bhubaneswar callers say them. Relative words ("behind", "opposite")
# are dropped because the place itself is the best fix we can give; the operator hears
# the rest.
_FILLER_WORDS: Final[Mapping[str, str]] = {
    "English": "near nr nearby neer opposite opp oppo behind beside besides next to close"
    " around front infront in at on of the and from by side back area locality place here"
    " there my our is am are i we me address location",
    # ke paas (near), saamne (opposite), peeche (behind), bagal (beside), nazdeek (near)
    "Hindi": "ke ka ki ko se pe par mein me hai ho paas pas pass saamne samne samane peeche"
    " piche pichhe bagal nazdeek nazdik najdik nikat wala wali",
    # pakhare (near), samnare (opposite), pachhare (behind), agare (in front), thare (at)
    "Odia": "pakhare paakhare pakhaku pase pashe samnare samna pachhare pachare agare thare",
}
_FILLERS: Final = frozenset(w for words in _FILLER_WORDS.values() for w in words.split())

# The city itself: dropped when the query names something in it ("Master Canteen,
# Bhubaneswar"), kept when it is all that identifies the place ("Bhubaneswar station").
_CITY: Final = frozenset({"bhubaneswar", "bhubaneshwar", "bbsr", "odisha", "orissa", "india"})

# Spellings folded into one word, so "Kalpana chhak" and "Kalpana Square" are the same
# phrase. "Chhak" is Odia for a square or junction.
_SYNONYM_GROUPS: Final[Mapping[str, str]] = {
    "square": "sq sqr chhak chhaka chak chowk chouk chauk circle crossing junction jn jnc"
    " chaurasta chowraha",
    "thana": "thanaa ps police policestation",
    "temple": "mandir mandira mandiram",
    "hospital": "hospitals hosp aspatal haspatal",
    "market": "bazar bazaar",
    "university": "univ vishwavidyalaya viswavidyalaya",
    "busstand": "busstop isbt",
    "station": "stn",
    "railway": "rly rail",
    "nagar": "nagara ngr",
    "vihar": "vihara bihar bihara",
    "road": "rd",
    "colony": "col",
}
_SYNONYMS: Final[Mapping[str, str]] = {
    variant: word
    for word, variants in _SYNONYM_GROUPS.items()
    for variant in (word, *variants.split())
}
_BIGRAMS: Final[Mapping[tuple[str, str], str]] = {
    ("thana", "station"): "thana",  # "police station" after synonyms
    ("thana", "thana"): "thana",  # "police thana"
    ("bus", "stand"): "busstand",
    ("bus", "stop"): "busstand",
    ("bus", "station"): "busstand",
    ("bus", "terminal"): "busstand",
    ("bus", "depot"): "busstand",
}
# Words that name a kind of place, not a place. In matching each stands for one capital
# letter, so it counts as one character: otherwise the shared word "square" would make
# "Damana Square" look like "Kalpana Square". A query made only of them ("near the
# temple", "police station") matches nothing rather than every temple or station.
_GENERIC_CODES: Final[Mapping[str, str]] = {
    "square": "Q",
    "thana": "P",
    "temple": "T",
    "hospital": "H",
    "market": "M",
    "university": "Y",
    "college": "K",
    "school": "O",
    "busstand": "B",
    "bus": "B",
    "stand": "E",
    "stop": "E",
    "station": "S",
    "railway": "L",
    "road": "D",
    "colony": "C",
    "nagar": "N",
    "vihar": "V",
    "park": "A",
    "unit": "U",
    "lane": "G",
    "street": "G",
}
# Place names glue these on ("Sahidnagar", "Ganganagar"); split them off so the glued
# and the spaced spelling are the same words.
_GLUED_SUFFIXES: Final = ("nagar", "vihar")

# Queries are spoken phrases; more words than this are not a place name, and bounding
# them bounds the matching work.
MAX_QUERY_TOKENS: Final = 16


def normalize(text: str) -> tuple[str, ...]:
    """The words of a place phrase as matched: lower-case ASCII, synonyms folded,
    fillers dropped (the city's name only when nothing else names the place)."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    words: list[str] = []
    for token in re.findall(r"[a-z]+|\d+", ascii_text):
        for word in _split_glued(_SYNONYMS.get(token, token)):
            word = _SYNONYMS.get(word, word)
            if words and (words[-1], word) in _BIGRAMS:
                words[-1] = _BIGRAMS[(words[-1], word)]
            else:
                words.append(word)
    kept = [w for w in words if w not in _FILLERS]
    named = [w for w in kept if w not in _CITY]
    if all(w in _GENERIC_CODES for w in named):
        named = kept
    return tuple(named[:MAX_QUERY_TOKENS])


def _split_glued(word: str) -> tuple[str, ...]:
    for suffix in _GLUED_SUFFIXES:
        if word.endswith(suffix) and len(word) >= len(suffix) + 3:
            return (word[: -len(suffix)], suffix)
    return (word,)


def phonetic_key(spelled: str) -> str:
    """A key that is equal for common romanisations of the same Indian word.

    Folds: ee/i, oo/u, w/v/b (Odia speakers say "Bani Bihar" for Vani Vihar), x/ks, q/k,
    z/j, f/p; aspirates and sh (kh, bh, chh, sh -> k, b, c, s); the inherent "a"
    between consonants that romanisations keep or drop (Khandagiri/Khandgiri,
    Jayadev/Jaydev); doubled letters (Nayapalli/Nayapali). Expects lower-case ASCII.
    """
    s = spelled.replace("ee", "i").replace("oo", "u")
    for old, new in (("x", "ks"), ("q", "k"), ("z", "j"), ("w", "v"), ("v", "b"), ("f", "p")):
        s = s.replace(old, new)
    s = re.sub(r"([bcdgjkpst])h+", r"\1", s)
    s = re.sub(r"(?<=[b-df-hj-np-tv-z])a(?=[b-df-hj-np-tv-z])", "", s)
    return re.sub(r"(.)\1+", r"\1", s)


@dataclass(frozen=True, slots=True)
class _Phrase:
    """Words with their two match keys: as spelled, and phonetic. Generic words are one
    capital letter in both; the other words are joined before the phonetic key is taken,
    so "Naya Palli" and "Nayapalli" have the same key."""

    spelled: str
    phonetic: str

    @classmethod
    def of(cls, words: Sequence[str]) -> _Phrase:
        spelled: list[str] = []
        phonetic: list[str] = []
        run: list[str] = []
        for word in words:
            code = _GENERIC_CODES.get(word)
            if code is None:
                run.append(word)
                spelled.append(word)
                continue
            if run:
                phonetic.append(phonetic_key("".join(run)))
                run = []
            spelled.append(code)
            phonetic.append(code)
        if run:
            phonetic.append(phonetic_key("".join(run)))
        return cls("".join(spelled), "".join(phonetic))


# A phonetic-only match ranks just below the same words spelled the same way.
_PHONETIC_WEIGHT: Final = 0.95
# How much of the score depends on the name covering the whole query: "Sahid Nagar
# thana" prefers the police station over the locality "Sahid Nagar".
_COVERAGE_WEIGHT: Final = 0.25
# In keys this short one wrong letter is another name (KIIT/IIT, AIIMS/KIMS), so a
# short match that is not exact (spelled or phonetic) counts for less.
_SHORT_KEY: Final = 5
_SHORT_PENALTY: Final = 0.8
# Below this a candidate is noise: random words score about 0.4 to 0.65 against the
# gazetteer, a one-letter typo in a short name about 0.85.
DEFAULT_MIN_SCORE: Final = 0.7


class _Name:
    """One name of a place, with its matchers prepared (difflib caches the second
    sequence, so the name is the second one and query windows vary the first)."""

    __slots__ = ("_phonetic", "_spelled", "phrase")

    def __init__(self, phrase: _Phrase) -> None:
        self.phrase = phrase
        self._spelled = SequenceMatcher(None, "", phrase.spelled, autojunk=False)
        self._phonetic = SequenceMatcher(None, "", phrase.phonetic, autojunk=False)

    def score(self, windows: Sequence[_Phrase], query_chars: int, floor: float) -> float:
        """The best score of any window of the query against this name, or 0.0 when
        none beats ``floor``."""
        best = floor
        mine = self.phrase
        mine_s, mine_p = len(mine.spelled), len(mine.phonetic)
        for window in windows:
            win_s, win_p = len(window.spelled), len(window.phonetic)
            factor = 1.0 - _COVERAGE_WEIGHT * (1.0 - win_s / query_chars)
            if window.spelled == mine.spelled:
                best = max(best, factor)
                continue
            if window.phonetic == mine.phonetic:
                best = max(best, _PHONETIC_WEIGHT * factor)
                continue
            # Cheap upper bounds first, since most windows cannot beat the best so far:
            # difflib's ratio is 2*matches/(len(a)+len(b)), and matches are at most the
            # shorter length (then: at most the shared letters, quick_ratio).
            bound = max(
                2.0 * min(win_s, mine_s) / (win_s + mine_s),
                _PHONETIC_WEIGHT * 2.0 * min(win_p, mine_p) / (win_p + mine_p),
            )
            if factor * bound <= best:
                continue
            self._spelled.set_seq1(window.spelled)
            self._phonetic.set_seq1(window.phonetic)
            quick = max(
                self._spelled.quick_ratio(), _PHONETIC_WEIGHT * self._phonetic.quick_ratio()
            )
            if factor * quick <= best:
                continue
            similarity = max(self._spelled.ratio(), _PHONETIC_WEIGHT * self._phonetic.ratio())
            if min(win_s, mine_s) < _SHORT_KEY:
                similarity *= _SHORT_PENALTY
            best = max(best, similarity * factor)
        return best if best > floor else 0.0


def _windows(words: Sequence[str], longest: int) -> list[_Phrase]:
    """Every run of up to ``longest`` consecutive words."""
    return [
        _Phrase.of(words[i:j])
        for i in range(len(words))
        for j in range(i + 1, min(i + longest, len(words)) + 1)
    ]


class PlaceMatcher:
    """Fuzzy search of place names as callers say them. Synchronous, no I/O.

    A query matches a name when some run of its words (after ``normalize``) is close to
    the name, spelled as written or by ``phonetic_key``; the score is that closeness,
    reduced a little when the run covers only part of the query.

    Thread-safe: the prepared difflib matchers are reused between queries, so
    searches from several threads take turns.
    """

    def __init__(self, places: Iterable[Place]) -> None:
        self._entries: list[tuple[Place, list[_Name]]] = []
        # A run of words much longer than any name cannot match one well; one word more
        # than the longest name still lets "Sahid Nagar" match "Sahidnagar".
        self._longest = 0
        self._lock = threading.Lock()
        for place in places:
            phrases: dict[str, _Phrase] = {}
            for text in (place.name, *place.aliases):
                words = normalize(text)
                if words:
                    phrases.setdefault(" ".join(words), _Phrase.of(words))
            self._entries.append((place, [_Name(p) for p in phrases.values()]))
            self._longest = max([self._longest, *(len(k.split()) for k in phrases)])

    def __len__(self) -> int:
        return len(self._entries)

    def search(
        self, query: str, *, limit: int = 5, min_score: float = DEFAULT_MIN_SCORE
    ) -> list[tuple[Place, float]]:
        """Places whose names match the query, best first, each once with its score.

        Only scores of at least ``min_score`` are returned; ties are ordered by name.
        A query of only fillers and generic words ("near the temple"), or of only the
        city's name, matches nothing. Text in other scripts than Latin (Odia,
        Devanagari) is ignored: the gazetteer holds romanised names only.
        Raises ValueError when ``limit`` < 1.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        words = normalize(query)
        if _names_nothing(words):
            return []
        windows = _windows(words, self._longest + 1)
        query_chars = len(_Phrase.of(words).spelled)
        floor = min_score - 1e-9
        found: list[tuple[Place, float]] = []
        with self._lock:
            for place, names in self._entries:
                score = max(name.score(windows, query_chars, floor) for name in names)
                if score > 0.0:
                    found.append((place, round(score, 3)))
        found.sort(key=lambda hit: (-hit[1], hit[0].name, hit[0].id))
        return found[:limit]


def _names_nothing(words: Sequence[str]) -> bool:
    # Only kinds of place ("the temple") or only the city ("Bhubaneswar"): no place.
    return all(w in _GENERIC_CODES for w in words) or all(w in _CITY for w in words)


def match_score(query: str, name: str) -> float:
    """How well ``query`` matches one ``name`` (0..1), by PlaceMatcher's measure."""
    words, name_words = normalize(query), normalize(name)
    if not name_words or _names_nothing(words):
        return 0.0
    windows = _windows(words, len(name_words) + 1)
    score = _Name(_Phrase.of(name_words)).score(windows, len(_Phrase.of(words).spelled), 0.0)
    return round(score, 3)


# --- The gazetteer file -----------------------------------------------------------------


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


# --- Nominatim --------------------------------------------------------------------------


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

"""Matching place names as callers say them: normalising the words of a phrase
(fillers, synonyms, transliteration variants) and scoring it against place names.

Synchronous and free of I/O; only the standard library's ``difflib``.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Final

from geo.geocode.places import Place

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

"""Text triage: what a caller's words suggest the emergency is. Pure: no I/O.

A plain SMS ("someone is injured near the temple") used to stay type ``other``,
priority 3, however clear its words. The vocabulary (config/triage.json) holds words and
phrases in English, Hindi (Devanagari and romanised) and Odia (script and romanised);
the first type in its order that the text matches is suggested, with the words that
matched, so an operator sees why and confirms or corrects it (classify). Intake uses a
suggestion only to raise an incident's priority, never to lower it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

# Splits on spaces and punctuation only: Indic vowel signs are not \w in Python's re,
# so \w+ would cut आग लगी into pieces.
_SEPARATORS = re.compile("[\\s.,!?;:()\\[\\]{}\"'/\\\\|\\-\u2013\u2014\u0964\u0965*#@&+=<>~`^_]+")
_ENGLISH_ENDINGS = ("", "s", "es")
# Case endings written joined to the word: Odia (ରେ in, ରୁ from, ର of, କୁ to, ଟି/ଟା
# the) and Hindi's oblique plural (ों).
_INDIC_ENDINGS = ("", "ରେ", "ରୁ", "ର", "କୁ", "ଟି", "ଟା", "ଙ୍କ", "ଙ୍କୁ", "ों", "ें")


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A suggested incident type and the words of the text that suggest it."""

    type: str
    matched: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """As a report's payload keeps it."""
        return {"type": self.type, "matched": list(self.matched), "confirmed": False}


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Phrases per type, the combinations, and the order types are tried in."""

    phrases: dict[str, tuple[tuple[str, ...], ...]]
    combinations: dict[str, tuple[str, ...]]
    order: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocabulary:
        """Read config/triage.json's shape."""
        phrases = {
            kind: tuple(tuple(_words(p)) for p in items if _words(p))
            for kind, items in data["types"].items()
        }
        combinations = {k: tuple(v) for k, v in data.get("combinations", {}).items()}
        return cls(phrases, combinations, tuple(data["order"]))


@cache
def default_vocabulary() -> Vocabulary:
    """The vocabulary shipped in config/triage.json."""
    text = resources.files("config").joinpath("triage.json").read_text("utf-8")
    return Vocabulary.from_json(json.loads(text))


def suggest(text: str | None, vocabulary: Vocabulary | None = None) -> Suggestion | None:
    """The type ``text`` suggests, or None when no word of the vocabulary is in it."""
    if not text:
        return None
    vocabulary = vocabulary or default_vocabulary()
    words = _words(text)
    found: dict[str, list[str]] = {}
    for kind, phrases in vocabulary.phrases.items():
        hits = [" ".join(p) for p in phrases if _contains(words, p)]
        if hits:
            found[kind] = hits
    for kind, parts in vocabulary.combinations.items():
        if all(part in found for part in parts):
            found[kind] = [hit for part in parts for hit in found[part]]
    for kind in vocabulary.order:
        if kind in found:
            return Suggestion(kind, tuple(dict.fromkeys(found[kind])))
    return None


def _words(text: str) -> list[str]:
    normal = unicodedata.normalize("NFC", text).casefold()
    return [w for w in _SEPARATORS.split(normal) if w]


def _contains(words: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(
        all(_same_word(words[i + j], phrase[j]) for j in range(n))
        for i in range(len(words) - n + 1)
    )


def _same_word(word: str, key: str) -> bool:
    if not word.startswith(key):
        return False
    ending = word[len(key) :]
    return ending in (_ENGLISH_ENDINGS if key.isascii() else _INDIC_ENDINGS)

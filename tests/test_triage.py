"""Text triage: callers' words in English, Hindi and Odia suggest a type; raise only."""

from __future__ import annotations

import json
import uuid
from importlib import resources
from typing import Any

import pytest

from dispatch.triage import Vocabulary, default_vocabulary, suggest
from tests.conftest import LiveServer

CASES = [
    # English
    ("someone is injured near the market", "medical", "injured"),
    ("He had a HEART ATTACK, please come", "medical", "heart attack"),
    ("house on fire near temple", "fire", "fire"),
    ("two men are stalking me", "women_in_distress", "stalking"),
    ("robbers in the shop right now", "crime_in_progress", "robbers"),
    ("bus accident, many injured", "accident_injuries", "accident"),
    ("minor accident at the square", "accident", "accident"),
    # Hindi, Devanagari
    ("घर में आग लगी है", "fire", "आग"),
    ("मेरा पीछा कर रहा है", "women_in_distress", "पीछा कर रहा"),
    ("बाइक की टक्कर हुई", "accident", "टक्कर"),
    ("टक्कर में दो लोग घायल", "accident_injuries", "घायल"),
    # Hindi, romanised
    ("aag lagi hai jaldi aao", "fire", "aag lagi"),
    ("chor ghus gaya ghar me", "crime_in_progress", "chor"),
    ("papa behosh ho gaye", "medical", "behosh"),
    # Odia, script and romanised
    ("ଘରେ ନିଆଁ ଲାଗିଛି", "fire", "ନିଆଁ"),
    ("ଦୁର୍ଘଟଣାରେ ଦୁଇ ଜଣ ଆହତ", "accident_injuries", "ଆହତ"),
    ("ଚୋର ପଶିଛି", "crime_in_progress", "ଚୋର"),
    ("bapa achet hei gale", "medical", "achet"),
]


@pytest.mark.parametrize(("text", "kind", "word"), CASES)
def test_words_suggest_a_type_and_say_which_matched(text: str, kind: str, word: str) -> None:
    suggestion = suggest(text)
    assert suggestion is not None, text
    assert suggestion.type == kind
    assert word in suggestion.matched


@pytest.mark.parametrize(
    "text",
    [
        "please call me back",
        "आगे वाले मोड़ पर मिलो",  # आगे (ahead) is not आग (fire)
        "the chorus was loud",  # chor (thief) only as a whole word
        "fireworks tonight",
        "",
    ],
)
def test_no_suggestion_without_a_vocabulary_word(text: str) -> None:
    assert suggest(text) is None


def test_the_first_type_in_order_wins_and_combinations_need_every_part() -> None:
    vocabulary = Vocabulary.from_json(
        {
            "order": ["both", "b", "a"],
            "types": {"a": ["alpha"], "b": ["beta gamma"]},
            "combinations": {"both": ["a", "b"]},
        }
    )
    assert suggest("alpha", vocabulary).type == "a"  # type: ignore[union-attr]
    assert suggest("beta then gamma", vocabulary) is None  # a phrase is words in a row
    both = suggest("beta gamma and alpha", vocabulary)
    assert both is not None
    assert both.type == "both"
    assert both.matched == ("alpha", "beta gamma")


def test_every_suggested_type_is_configured_and_above_other() -> None:
    types = json.loads((resources.files("config") / "incident_types.json").read_text())
    vocabulary = default_vocabulary()
    for kind in vocabulary.order:
        assert kind in types, kind
        # A suggestion may only raise a report's priority from 'other'.
        assert types[kind]["priority"] < types["other"]["priority"], kind


async def _sms(live: LiveServer, text: str, sender: str) -> dict[str, Any]:
    body = json.dumps({"message_id": uuid.uuid4().hex, "from": sender, "text": text}).encode()
    response = await live.http.post(
        "/v1/gateways/sms", content=body, headers=live.signed_headers(body, gateway="sms")
    )
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_plain_sms_is_typed_from_its_words(live: LiveServer) -> None:
    answer = await _sms(live, "someone is injured near the bus stand", "+919437000001")
    incident = (
        await live.http.get(
            f"/v1/incidents/{answer['incident_id']}",
            headers={"Authorization": f"Bearer {live.operator_token}"},
        )
    ).json()
    assert incident["type"] == "medical"
    assert incident["priority"] == 1
    triage = incident["reports"][0]["payload"]["triage"]
    assert triage == {"type": "medical", "matched": ["injured"], "confirmed": False}
    created = next(e for e in incident["events"] if e["type"] == "incident.created")
    assert created["data"]["triage"]["matched"] == ["injured"]


async def test_a_suggestion_never_lowers_an_incident(live: LiveServer) -> None:
    sender = "+919437000002"
    first = await _sms(live, "aag lagi hai", sender)  # fire, priority 1
    second = await _sms(live, "chor bhag gaya", sender)  # crime, priority 2: same sender
    assert second["incident_id"] == first["incident_id"]
    incident = (
        await live.http.get(
            f"/v1/incidents/{first['incident_id']}",
            headers={"Authorization": f"Bearer {live.operator_token}"},
        )
    ).json()
    assert incident["type"] == "fire"
    assert incident["priority"] == 1


async def test_a_call_is_typed_from_its_notes(live: LiveServer) -> None:
    body = json.dumps(
        {"call_id": uuid.uuid4().hex, "caller": "+919437000003", "notes": "ଘରେ ନିଆଁ ଲାଗିଛି"}
    ).encode()
    response = await live.http.post(
        "/v1/gateways/telecom/calls",
        content=body,
        headers=live.signed_headers(body, gateway="telecom"),
    )
    assert response.status_code == 202, response.text
    kind = await live.db.fetchval(
        "SELECT type FROM incidents WHERE id = $1", response.json()["incident_id"]
    )
    assert kind == "fire"

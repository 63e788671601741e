"""The exchange's pure rules: answers, retries, what is reported back, inbound EIDOs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispatch.errors import ConfigurationError
from dispatch.exchange.agencies import HandOverRule, parse_agencies
from dispatch.exchange.handoff import (
    EidoUnusable,
    after_attempt,
    inbound_report,
    outcome_of,
    retry_delay_s,
    status_update_for,
)
from dispatch.exchange.rules import Waiting as RuleWaiting
from dispatch.exchange.rules import due

SAMPLE = Path(__file__).parent / "fixtures" / "eido" / "sample_call_transfer.json"


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(200, "delivered"), (202, "delivered"), (401, "refused"), (422, "refused"),
     (409, "refused"), (408, "retry"), (429, "retry"), (500, "retry"), (503, "retry"),
     (None, "retry")],
)  # fmt: skip
def test_what_an_answer_means(code: int | None, outcome: str) -> None:
    assert outcome_of(code) == outcome


def test_retries_double_up_to_the_cap_then_escalate() -> None:
    delays = [retry_delay_s(n, base_s=2, cap_s=60, spread=0) for n in range(1, 8)]
    assert delays == [2, 4, 8, 16, 32, 60, 60]
    assert retry_delay_s(1, base_s=2, cap_s=60, spread=1.0) == 2.5
    steps = [
        after_attempt("retry", n, max_attempts=3, base_s=1, cap_s=10, spread=0) for n in (1, 2, 3)
    ]
    assert [(s.state, s.event) for s in steps] == [
        ("pending", None), ("pending", None), ("escalated", "escalated")
    ]  # fmt: skip
    assert after_attempt("delivered", 3, max_attempts=3, base_s=1, cap_s=1, spread=0).event == (
        "acknowledged"
    )
    assert after_attempt("refused", 1, max_attempts=9, base_s=1, cap_s=1, spread=0).state == (
        "refused"
    )


def test_what_the_handing_cad_is_told() -> None:
    assert status_update_for("assignment.accepted", {}) == ("unit_assigned", {})
    assert status_update_for("unit.status_changed", {"to": "on_scene"}) == ("on_scene", {})
    assert status_update_for("unit.status_changed", {"to": "en_route"}) is None
    assert status_update_for("incident.closed", {"disposition": "hoax"}) == (
        "closed", {"disposition": "hoax"}
    )  # fmt: skip
    assert status_update_for("incident.note_added", {"text": "x"}) is None


def test_an_inbound_eido_is_a_report_with_warnings_not_a_refusal() -> None:
    sample = json.loads(SAMPLE.read_text())
    inbound = inbound_report(sample, agency_id="state.pa.us", known_types={"medical", "other"})
    report = inbound.report
    assert inbound.tracking_id == sample["$id"]
    assert (report.channel, report.gateway_id) == ("eido", "agency:state.pa.us")
    assert report.sender == "8195551212"
    assert report.incident_type == "other"
    # Its only location by value is civic (no point): placed by operators, with a word why.
    assert report.location is None
    assert any("placed by operators" in w for w in report.warnings)
    broken = {**sample, "eidoVersion": "9"}
    assert any("EIDO schema" in w for w in inbound_report(
        broken, agency_id="x", known_types=()).report.warnings)  # fmt: skip
    for unusable in ([], {"no": "id"}, {"$id": " "}):
        with pytest.raises(EidoUnusable):
            inbound_report(unusable, agency_id="x", known_types=())


def test_agencies_file_problems_are_named_and_secrets_stay_out_of_reprs() -> None:
    good = parse_agencies(
        {"108-ambulance": {"endpoint": "https://cad.108.example/", "secrets": ["s" * 16],
                           "type": "ems"}}, "f"
    )  # fmt: skip
    agency = good["108-ambulance"]
    assert agency.endpoint == "https://cad.108.example"
    assert "s" * 16 not in repr(agency)
    assert agency.public() == {"id": "108-ambulance", "name": "108-ambulance", "type": "ems"}
    for bad, words in (
        ({"X Y": {}}, "not an agency id"),
        ({"a": {"endpoint": "ftp://x", "secrets": ["s" * 16]}}, "endpoint"),
        ({"a": {"endpoint": "http://x", "secrets": ["short"]}}, "16 or more"),
        ([], "object of agencies"),
    ):
        with pytest.raises(ConfigurationError, match=words):
            parse_agencies(bad, "f")


def test_subscription_frames_and_one_notify_per_incident() -> None:
    from dispatch.exchange.subscription import (
        BadFrame,
        Subscribe,
        Unsubscribe,
        latest_per_incident,
        parse_frame,
    )

    assert parse_frame('{"type": "subscribe", "requestId": "r"}') == Subscribe("r", None)
    assert parse_frame(
        '{"type": "subscribe", "requestId": "r", "after": "0000000000000042"}'
    ) == Subscribe("r", 42)
    assert parse_frame(
        '{"type": "unsubscribe", "requestId": "r", "subscriptionId": "s"}'
    ) == Unsubscribe("r", "s")
    for bad, words in (
        ("[]", "JSON object"),
        ('{"type": "subscribe"}', "requestId"),
        ('{"type": "subscribe", "requestId": "r", "after": 42}', "position string"),
        ('{"type": "subscribe", "requestId": "r", "after": "-1"}', "not an event position"),
        ('{"type": "subscribe", "requestId": "r", "event": "presence"}', "event package"),
        ('{"type": "notify", "requestId": "r"}', "subscribe or unsubscribe"),
    ):
        with pytest.raises(BadFrame, match=words):
            parse_frame(bad)
    assert latest_per_incident([(5, 1), (6, 2), (9, 1), (7, 3)]) == [(6, 2), (7, 3), (9, 1)]


def _ruled(**rule: object) -> dict[str, object]:
    return {
        "108-ambulance": {
            "endpoint": "http://127.0.0.1:9",
            "secrets": ["s" * 16],
            "type": "ems",
            "hand_over_when": {"types": ["medical"], "no_unit_of": "ambulance", **rule},
        }
    }


def test_a_hand_over_rule_hands_over_what_it_names_once() -> None:
    agencies = parse_agencies(_ruled(after_s=60), "test")
    rule = agencies["108-ambulance"].hand_over_when
    assert rule == HandOverRule(frozenset({"medical"}), "ambulance", 60.0)
    none: frozenset[str] = frozenset()
    waiting = [
        RuleWaiting(1, "medical", frozenset({"ambulance"}), 61, none),  # due
        RuleWaiting(2, "medical", frozenset({"ambulance"}), 59, none),  # not yet
        RuleWaiting(3, "medical", frozenset({"police"}), 600, none),  # its ambulance is on the way
        RuleWaiting(4, "fire", frozenset({"ambulance"}), 600, none),  # not a type of the rule
        RuleWaiting(5, "medical", frozenset({"ambulance"}), 600, frozenset({"108-ambulance"})),
    ]
    assert [(i, a.id) for i, a, _ in due(agencies, waiting)] == [(1, "108-ambulance")]


@pytest.mark.parametrize(
    "rule",
    [
        {"types": [], "no_unit_of": "ambulance"},
        {"types": ["medical"]},
        {"types": ["medical"], "no_unit_of": "ambulance", "after_s": -1},
        {"types": ["medical"], "no_unit_of": "ambulance", "after_s": True},
        "medical",
    ],
)
def test_a_bad_hand_over_rule_is_refused_at_start(rule: object) -> None:
    raw = _ruled()
    raw["108-ambulance"]["hand_over_when"] = rule  # type: ignore[index]
    with pytest.raises(ConfigurationError, match="hand_over_when"):
        parse_agencies(raw, "test")

"""dispatch.core.lifecycle without I/O, pair by pair: every legal crew report or offer
answer is applied with its change, every illegal one refused with a typed reason."""

from __future__ import annotations

import itertools

import pytest

from dispatch.core.lifecycle import (
    UNIT_STATUSES,
    CrewChange,
    OfferAnswer,
    OfferExpired,
    Refused,
    answer_offer,
    crew_report,
    expire_offer,
)
from dispatch.errors import InvalidTransition
from tests.crew_rule import CREW_MAY

ASSIGNMENT_STATUSES = ("offered", "accepted", "declined", "expired", "cancelled", "completed")


@pytest.mark.parametrize(
    ("current", "wanted"), list(itertools.product(UNIT_STATUSES, [*UNIT_STATUSES, "parked"]))
)
def test_crew_reports(current: str, wanted: str) -> None:
    result = crew_report("u1", current, wanted)
    if wanted in CREW_MAY[current]:
        assert isinstance(result, CrewChange)
        assert result.unit_status == wanted
        assert result.ends_assignment == (wanted in {"returning", "available"})
        assert result.incident_status == {"en_route": "dispatched", "on_scene": "on_scene"}.get(
            wanted
        )
    else:
        assert isinstance(result, Refused)
        error = result.error()
        assert type(error) is InvalidTransition
        assert str(error) == f"unit u1 is {current.replace('_', ' ')}, so it cannot be " + (
            wanted.replace("_", " ")
        )


@pytest.mark.parametrize(
    ("status", "late", "accept"),
    list(itertools.product(ASSIGNMENT_STATUSES, [False, True], [False, True])),
)
def test_offer_answers(status: str, late: bool, accept: bool) -> None:
    result = answer_offer(7, status, late=late, accept=accept)
    if status == "offered" and not late:
        assert result == (
            OfferAnswer("accepted", "dispatched", "dispatched", reoffer=False)
            if accept
            else OfferAnswer("declined", "available", None, reoffer=True)
        )
    else:
        assert isinstance(result, Refused)
        # Late, whether the sweep has marked it expired yet or not.
        assert isinstance(result.error(), OfferExpired) == (status in ("offered", "expired"))


@pytest.mark.parametrize(
    ("status", "late"), list(itertools.product(ASSIGNMENT_STATUSES, [False, True]))
)
def test_the_deadline_expires_only_an_open_offer_past_it(status: str, late: bool) -> None:
    result = expire_offer(status, late=late)
    if status == "offered" and late:
        # As a decline: the unit is free and the incident goes to the next one.
        assert result == OfferAnswer("expired", "available", None, reoffer=True)
    else:
        assert result is None

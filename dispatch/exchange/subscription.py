"""EIDO subscriptions (after NENA-STA-024's subscribe/notify model): the frames of the
exchange websocket and what an agency's subscription covers. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dispatch.events import format_position, parse_position

EVENT_PACKAGE = "emergency-incident-data-object"
SOCKET_PATH = "/v1/exchange/ws"
# Events that can change which incidents a subscription covers.
SCOPE_EVENTS = frozenset(
    {
        "incident.handoff_requested",
        "incident.handoff_refused",
        "incident.handoff_escalated",
    }
)


def handshake_body(path: str = SOCKET_PATH) -> bytes:
    """What an agency signs to open the socket (a GET has no body): ``GET <path>``."""
    return f"GET {path}".encode()


class BadFrame(ValueError):
    """A client frame this socket does not take; the message says what it wants."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Subscribe to EIDOs; ``after``: resume after this position (None: a fresh start)."""

    request_id: str
    after: int | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """End the subscription (the socket stays open)."""

    request_id: str
    subscription_id: str


def parse_frame(text: str) -> Subscribe | Unsubscribe:
    """A client frame, or BadFrame naming what is wrong."""
    try:
        frame = json.loads(text)
    except ValueError as err:
        raise BadFrame("a frame is one JSON object") from err
    if not isinstance(frame, Mapping):
        raise BadFrame("a frame is one JSON object")
    request_id = frame.get("requestId")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 100:
        raise BadFrame("requestId (1 to 100 characters) is required")
    kind = frame.get("type")
    if kind == "subscribe":
        if frame.get("event", EVENT_PACKAGE) != EVENT_PACKAGE:
            raise BadFrame(f"only the {EVENT_PACKAGE!r} event package is offered")
        after = frame.get("after")
        if after is None:
            return Subscribe(request_id, None)
        if not isinstance(after, str):
            raise BadFrame("after is a position string, as notify frames carry")
        try:
            return Subscribe(request_id, parse_position(after))
        except ValueError as err:
            raise BadFrame(str(err)) from err
    if kind == "unsubscribe":
        subscription_id = frame.get("subscriptionId")
        if not isinstance(subscription_id, str):
            raise BadFrame("subscriptionId is required")
        return Unsubscribe(request_id, subscription_id)
    raise BadFrame("type must be subscribe or unsubscribe")


def subscribe_response(
    request_id: str, subscription_id: str | None, position: int, status: int = 200, reason: str = ""
) -> dict[str, Any]:
    """The answer to a subscribe (200, or a 4xx with the reason)."""
    message: dict[str, Any] = {
        "type": "subscribeResponse",
        "requestId": request_id,
        "statusCode": status,
        "position": format_position(position),
    }
    if subscription_id is not None:
        message["subscriptionId"] = subscription_id
    if reason:
        message["reason"] = reason
    return message


def notify(subscription_id: str, position: int, eido: Mapping[str, Any]) -> dict[str, Any]:
    """One incident's EIDO as of ``position`` (resume after it)."""
    return {
        "type": "notify",
        "event": EVENT_PACKAGE,
        "subscriptionId": subscription_id,
        "position": format_position(position),
        "notification": [eido],
    }


def latest_per_incident(events: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """(position, incident id) pairs reduced to each incident's latest, in position
    order: one notify per incident carries its whole current state."""
    latest: dict[int, int] = {}
    for position, incident_id in events:
        latest[incident_id] = max(position, latest.get(incident_id, 0))
    return sorted((p, i) for i, p in latest.items())

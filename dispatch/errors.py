"""The core's error tree. Each carries what a person needs to act on it.

HTTP statuses and websocket close codes are mapped from these in one place
(``dispatch.api.errors``); nothing below the API knows about HTTP.
"""

from __future__ import annotations

from typing import Any


class DispatchError(Exception):
    """Base of every error the core raises on purpose."""


class NotFound(DispatchError):
    """A resource that does not exist."""

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident} does not exist")
        self.kind = kind
        self.ident = ident


class Unauthorized(DispatchError):
    """Missing or wrong credentials (signature, token)."""


class IdempotencyConflict(DispatchError):
    """An Idempotency-Key reused with a different request body."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used for a different request body; "
            "use a new key for a new delivery"
        )
        self.key = key


class InvalidTransition(DispatchError):
    """A state change that the current state does not allow."""

    def __init__(self, what: str, ident: object, current: str, wanted: str) -> None:
        # "so it cannot be": the wanted side is a state (offered, on_scene) or an action
        # (changed, split, confirmed), and "become changed" read badly for the actions.
        super().__init__(f"{what} {ident} is {_words(current)}, so it cannot be {_words(wanted)}")
        self.what = what
        self.ident = ident
        self.current = current
        self.wanted = wanted


class IncidentNotLocated(DispatchError):
    """An incident with no location cannot be ranked or offered yet."""

    def __init__(self, incident_id: int) -> None:
        super().__init__(
            f"incident {incident_id} has no location yet; add one (e.g. geocode the"
            " caller's address) before assigning a unit"
        )
        self.incident_id = incident_id


class UnknownIncidentType(DispatchError):
    """An incident type that config/incident_types.json does not define."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"incident type {name!r} is not configured; known types: {known}")
        self.name = name


class PayloadTooLarge(DispatchError):
    """A request body larger than a gateway may send."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes; a report to 112 is far smaller")
        self.limit = limit


class MalformedRequest(DispatchError):
    """A request the sender must fix: ``detail`` names each field and the reason."""

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__("malformed request")
        self.detail = detail


class ConfigurationError(DispatchError):
    """Settings or data files that the server cannot start with."""


def _words(state: str) -> str:
    return state.replace("_", " ")

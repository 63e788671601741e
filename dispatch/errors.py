"""The core's error tree. Each carries what a person needs to act on it.

HTTP statuses and websocket close codes are mapped from these in one place
(``dispatch.api.errors``); nothing below the API knows about HTTP.
"""

from __future__ import annotations


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
        super().__init__(f"{what} {ident} is {current}; it cannot become {wanted}")
        self.what = what
        self.ident = ident
        self.current = current
        self.wanted = wanted


class ConfigurationError(DispatchError):
    """Settings or data files that the server cannot start with."""

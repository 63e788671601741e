"""The one error the private servers raise."""


class EmbeddedError(Exception):
    """A private server could not be started or stopped; the message says what to do about it."""

"""Secrets out of log lines: tokens in query strings, bearer headers, URL passwords.

uvicorn logs every websocket connect with its full query string (``?token=...``), and
tracebacks can quote URLs, so the rule is applied to every record, not only to ours:
:class:`RedactingFilter` rewrites a record's message, arguments and traceback text
before any handler formats it (text and JSON alike). :func:`redact` is the one rule.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

# A parameter whose name ends in one of these words carries a secret (token, api_key,
# client_secret, X-Signature...). Over-redacting an innocent "monkey=" costs nothing;
# under-redacting a token costs the token.
_SECRET_NAMES = (
    "(?:"
    + "|".join(
        (
            r"token|secret|password|passwd|pwd|pass|api[_-]?key|apikey|key|signature|sig",
            r"auth|authorization|credentials?|session(?:[_-]?id)?|jwt|otp",
        )
    )
    + ")s?"
)  # plurals too: secrets=, "aml_keys": [...], tokens=
_QUERY_PARAM = re.compile(
    rf"(?i)(?P<name>(?:^|(?<=[?&;\s\"'(,]))[\w.\-]*(?:{_SECRET_NAMES})(?:%3D|=))"
    r"(?P<value>[^&\s\"'#;,)]+)"
)
# "Authorization: Bearer abc", "bearer abc" in an error text.
_BEARER = re.compile(r"(?i)(?P<name>\bbearer\s+)(?P<value>[\w\-.~+/=]+)")
# {"token": "abc"} quoted in a message (an echoed client frame, a JSON body); a list of
# them ("secrets": ["a", "b"], secrets=('a',) in a repr) is masked whole.
_JSON_FIELD = re.compile(
    rf"(?i)(?P<name>[\"'][\w\-]*(?:{_SECRET_NAMES})[\"']\s*:\s*[\"'])(?P<value>[^\"']+)"
)
_LIST_FIELD = re.compile(
    rf"(?i)(?P<name>\b[\w\-]*(?:{_SECRET_NAMES})[\"']?\s*[:=]\s*)(?P<value>[\[(][^\])]*[\])])"
)
# "Authorization: Token abc", "token: abc", "apiKey: abc": a header or a YAML-ish line.
_HEADER = re.compile(
    rf"(?i)(?P<name>\b[\w\-]*(?:{_SECRET_NAMES}):\s*(?:(?:bearer|token|basic|digest)\s+)?)"
    r"(?P<value>[^\s\"',;]+)"
)
# postgresql://user:password@host, redis://:password@host
_URL_PASSWORD = re.compile(r"(?P<name>\b[a-z][a-z0-9+.\-]*://[^/\s:@]*:)(?P<value>[^@\s/]+)(?=@)")

_RULES = (_LIST_FIELD, _QUERY_PARAM, _BEARER, _JSON_FIELD, _HEADER, _URL_PASSWORD)
# A piece of text every rule's match contains (each name above holds one of the first
# eleven; then "bearer" and a URL's "://"). Most text, every access line and every id
# and status of a record's fields, holds none: a few substring tests answer for it
# instead of six substitutions (a regex alternation of these costs ten times more),
# and every log record passes here. tests/test_log_redaction.py holds the two in step.
_CUES = (
    "token", "secret", "pass", "pwd", "key", "sig", "auth", "credential", "session", "jwt",
    "otp", "bearer", "://",
)  # fmt: skip


def may_hold_secret(text: str) -> bool:
    """False only when no rule of :func:`redact` can match ``text``."""
    if not text.isascii():
        # The rules ignore case the Unicode way (the long s matches s, the dotless i
        # matches i): such text takes the rules, not a cue list that must know them.
        return True
    low = text.lower()
    return any(cue in low for cue in _CUES)


def _mask(match: re.Match[str]) -> str:
    return match.group("name") + REDACTED


def redact(text: str) -> str:
    """``text`` with every secret-looking value replaced by ``[REDACTED]``."""
    if not may_hold_secret(text):
        return text
    for rule in _RULES:
        text = rule.sub(_mask, text)
    return text


def _redact_arg(value: Any) -> Any:
    """A log argument, redacted; left as it is (type and all) when it holds no secret."""
    if value is None or isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


# What every LogRecord has; anything else came in through ``extra=`` (and the JSON
# formatter prints it as a field of its own).
_STANDARD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_SECRET_FIELD = re.compile(rf"(?i)(?:{_SECRET_NAMES})$")


def redact_record(record: logging.LogRecord) -> None:
    """Rewrite ``record`` in place so no formatter can print a secret it carried.

    Arguments keep their positions (uvicorn's access formatter unpacks them), a
    traceback that quotes a secret is formatted now, redacted, and kept as ``exc_text``
    (which both the text and the JSON formatter print) instead of the live exception,
    and an ``extra=`` field named like a secret (``token``, ``api_key``) is redacted
    whole.
    """
    record.msg = _redact_arg(record.msg)
    args = record.args
    if isinstance(args, tuple):
        record.args = tuple(_redact_arg(a) for a in args)
    elif isinstance(args, Mapping):
        record.args = {k: _redact_arg(v) for k, v in args.items()}
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(text)
        if cleaned != text:  # otherwise the live exception stays, for whoever wants it
            record.exc_text = cleaned
            record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for name, value in list(vars(record).items()):
        if name in _STANDARD_FIELDS:
            continue
        if _SECRET_FIELD.search(name) and value is not None:
            setattr(record, name, REDACTED)
        else:
            setattr(record, name, _redact_arg(value))


class RedactingFilter(logging.Filter):
    """Lets every record through, with its secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record``; never drops it."""
        redact_record(record)
        return True


# Loggers that emit records of their own (a logger's filter does not see its
# children's records): uvicorn's access and error lines carry the raw query string.
_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "websockets")


def _install(target: logging.Filterer) -> None:
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())


def install_log_redaction() -> None:
    """Redact uvicorn's loggers and every handler of the root logger (idempotent).

    Called when the app starts, so a server started by tests or benches with uvicorn's
    own logging configuration is covered as well as ``erss serve``.
    """
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        _install(logger)
        for handler in logger.handlers:
            _install(handler)
    for handler in logging.getLogger().handlers:
        _install(handler)

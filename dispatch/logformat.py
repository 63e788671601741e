"""How log lines read: the ids an operator searches by, in text logs too; no chatter;
no secret (``configure_logging`` sets it all up for ``erss``).

The JSON format carries every ``extra`` field already; the text format showed only the
message, so "offer expired unanswered" said nothing of which offer. Socket opens and
closes (one per MDT reconnect, thousands an hour) and the embedded PostgreSQL's command
lines are routine: they go to DEBUG, not INFO.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

from dispatch.redact import RedactingFilter

# The fields log calls pass as ``extra`` that identify what a line is about.
ID_FIELDS = (
    "incident_id",
    "report_id",
    "assignment_id",
    "unit_id",
    "zone_id",
    "channel",
    "gateway_id",
    "status",
)
_ROUTINE = frozenset({"connection open", "connection closed"})
QUIET_LOGGERS = ("pgserver",)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message key=value ...`` with the ids the call passed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The line, then the ids of ``extra`` in a fixed order."""
        line = super().format(record)
        ids = [
            f"{name}={getattr(record, name)}"
            for name in ID_FIELDS
            if getattr(record, name, None) is not None
        ]
        if not ids:
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the ids
        return f"{head} {' '.join(ids)}{sep}{tail}"


class RoutineToDebug(logging.Filter):
    """Demotes uvicorn's per-socket "connection open/closed" lines to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False (dropped) for a routine line when the logger does not log DEBUG."""
        if record.levelno == logging.INFO and record.getMessage() in _ROUTINE:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def quiet_routine_loggers() -> None:
    """Routine third-party loggers at WARNING, and uvicorn's socket chatter demoted."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, RoutineToDebug) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(RoutineToDebug())


def configure_logging(log_format: str) -> None:
    """Log to stderr, as text for people or JSON lines for log shippers; never a secret."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(TextFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    quiet_routine_loggers()

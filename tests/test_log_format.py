"""Text logs name what a line is about, and leave routine chatter out."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from dispatch.cli import configure_logging
from dispatch.logformat import RoutineToDebug


@pytest.fixture
def text_logs() -> Iterator[io.StringIO]:
    """configure_logging's own handler and formatter, writing to a string."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    uvicorn_error = logging.getLogger("uvicorn.error")
    pgserver = logging.getLogger("pgserver")
    saved_levels = (uvicorn_error.filters[:], pgserver.level)
    uvicorns = [logging.getLogger("uvicorn"), uvicorn_error]
    saved_uvicorn = [(u.handlers[:], u.propagate, u.level) for u in uvicorns]
    # As `erss serve` has it (uvicorn started with log_config=None): another test may
    # have run uvicorn with its own logging config, which stops propagation.
    for logger in uvicorns:
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    try:
        configure_logging("text")
        out = io.StringIO()
        root.handlers[0].setStream(out)  # type: ignore[attr-defined]
        yield out
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        uvicorn_error.filters[:] = saved_levels[0]
        for logger, (handlers, propagate, level) in zip(uvicorns, saved_uvicorn, strict=True):
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.setLevel(level)
        pgserver.setLevel(saved_levels[1])


def test_text_lines_carry_the_ids_passed_as_extra(
    text_logs: io.StringIO,
) -> None:
    logging.getLogger("dispatch.expiry").warning(
        "offer expired unanswered",
        extra={"incident_id": 31, "unit_id": "BBSR-PCR-07", "assignment_id": 9},
    )
    line = text_logs.getvalue().strip().splitlines()[-1]
    assert line.endswith(
        "offer expired unanswered incident_id=31 assignment_id=9 unit_id=BBSR-PCR-07"
    ), line


def test_socket_chatter_and_pgserver_commands_are_not_info(
    text_logs: io.StringIO,
) -> None:
    logging.getLogger("uvicorn.error").info("connection open")
    logging.getLogger("uvicorn.error").info("connection closed")
    logging.getLogger("pgserver").info("running pg_ctl -D /tmp/x start")
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    err = text_logs.getvalue()
    assert "connection open" not in err
    assert "connection closed" not in err
    assert "pg_ctl" not in err
    assert "Application startup complete." in err


def test_routine_lines_stay_at_debug_when_debug_is_wanted() -> None:
    logger = logging.getLogger("test.routine")
    logger.setLevel(logging.DEBUG)
    record = logger.makeRecord(
        "test.routine", logging.INFO, __file__, 1, "connection open", (), None
    )
    assert RoutineToDebug().filter(record) is True
    assert record.levelname == "DEBUG"

"""Structured logging: JSON lines carrying the request id, with sensitive numbers masked.

No secret may reach a log line, whatever fails. Three layers see to it: the database
engine never puts bound values into an error (store/db.py), known secret shapes
(``whsec_…``, ``sk_live_…``, session tokens after ``Bearer``) and database ``DETAIL``
lines are masked in every structlog event, exception text included, and records of the
standard ``logging`` module (uvicorn, asyncio, SQLAlchemy) are masked the same way.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

# Long digit runs (card, ID-card and phone numbers) keep only their last four digits.
_LONG_NUMBER = re.compile(r"(?<!\d)(\d{7,15})(\d{4})(?!\d)")
# Secrets keep their kind (the prefix) and lose the rest.
_SECRET = re.compile(r"\b(whsec_|sk_live_|sk_test_|Bearer\s+)[A-Za-z0-9_\-.~+/=]{6,}")
# PostgreSQL quotes row values in DETAIL lines ("Failing row contains (…)").
_DB_DETAIL = re.compile(r"(DETAIL:)[^\n]*")
# What _LONG_NUMBER cannot match without. Most text (an access-log line's method, path,
# level, time and request id) holds no digit run, no secret prefix and no DETAIL, and
# a substring test or one short search costs a fraction of the substitution it spares.
_DIGIT_RUN = re.compile(r"\d{11}")


def mask(text: str) -> str:
    if "whsec_" in text or "sk_" in text or "Bearer" in text:
        text = _SECRET.sub(r"\1[hidden]", text)
    if "DETAIL:" in text:
        text = _DB_DETAIL.sub(r"\1 [hidden]", text)
    if _DIGIT_RUN.search(text) is None:
        return text
    return _LONG_NUMBER.sub(_keep_last_four, text)


def _keep_last_four(match: re.Match[str]) -> str:
    return "*" * len(match.group(1)) + match.group(2)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_masked(v) for v in value)
    return value


def _mask_values(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event.items():
        event[key] = _masked(value)
    return event


_plain_factory = logging.getLogRecordFactory()


def _masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """A standard-library log record with its message and traceback already masked."""
    record = _plain_factory(*args, **kwargs)
    try:
        record.msg, record.args = mask(record.getMessage()), None
    except Exception:  # a malformed %-format: leave it to logging's own error report
        return record
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = mask("".join(traceback.format_exception(record.exc_info[1])).rstrip())
    if record.stack_info:
        record.stack_info = mask(record.stack_info)
    return record


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written. Loggers are cached on first
    use; one holding the stream of that moment would write to a closed file once a test
    runner (or anything else) has swapped ``sys.stderr`` and closed its stand-in."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    level: str = "info", *, json: bool = True, stream: TextIO | None = None
) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        # Plain tracebacks: the default pretty one prints each frame's local variables.
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_values,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or _CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    logging.setLogRecordFactory(_masked_record)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)

"""Structured logging with structlog: JSON in production, readable on a terminal.

Every line of the runtime carries the event id, referral id, subject and region it is
about (bound by the caller). Personal data never reaches a log line: the redaction
processor replaces configured keys wherever they occur, and the runtime never logs event
``data`` in the first place (on the bus the personal data is sealed anyway, see
:mod:`xregion.sealing`).

The redacted keys are :data:`DEFAULT_SENSITIVE` (every personal-data field name of the
contract, and the containers that hold them) plus those named in the environment variable
``XREGION_LOG_REDACT`` (comma-separated), or exactly the ``sensitive`` keys given to
:func:`configure_logging`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
DEFAULT_SENSITIVE = frozenset(
    {"name", "address", "contact", "data", "payload", "seed", "suspects", "parties", "entry", "sealed"}
)
REDACT_ENV = "XREGION_LOG_REDACT"


def redacted_keys(extra: str | None = None) -> frozenset[str]:
    """:data:`DEFAULT_SENSITIVE` plus the comma-separated keys of ``extra`` (default: the
    environment variable ``XREGION_LOG_REDACT``)."""
    raw = os.environ.get(REDACT_ENV, "") if extra is None else extra
    return DEFAULT_SENSITIVE | {k.strip() for k in raw.split(",") if k.strip()}


class Redactor:
    """A structlog processor that blanks sensitive keys, also inside nested dicts and lists."""

    def __init__(self, keys: Iterable[str] = DEFAULT_SENSITIVE) -> None:
        self.keys = frozenset(keys)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: REDACTED if k in self.keys else self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if key in self.keys:
                event_dict[key] = REDACTED
            elif isinstance(event_dict[key], dict | list | tuple):
                event_dict[key] = self._clean(event_dict[key])
        return event_dict


def configure_logging(
    fmt: str = "auto", level: int = logging.INFO, stream: Any = None, sensitive: Iterable[str] | None = None
) -> None:
    """``fmt``: ``json``, ``console`` or ``auto`` (console on a terminal, JSON otherwise).

    ``sensitive``: the keys to redact; default :func:`redacted_keys` (the built-in list and
    ``XREGION_LOG_REDACT``).
    """
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    # The console renderer prints exceptions itself; JSON wants them as a string field.
    exceptions: list[Any] = [structlog.processors.format_exc_info] if fmt == "json" else []
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            Redactor(redacted_keys() if sensitive is None else sensitive),
            *exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


class StructlogBridge:
    """A logger for FastStream (its ``LoggerProto``) that writes through structlog, so that
    FastStream's own lines (application start and stop, broker connection) come out in the
    format of ours (JSON under ``--log-format json``) and through the same redaction."""

    RESERVED = frozenset({"event", "level", "log_level", "timestamp", "exc_info", "logger"})

    def __init__(self, name: str = "faststream") -> None:
        self.name = name
        self._log = structlog.get_logger(name)

    def log(self, level: int, msg: Any, /, *, exc_info: Any = None, extra: Mapping[str, Any] | None = None) -> None:
        fields = {k: v for k, v in (extra or {}).items() if isinstance(k, str) and k not in self.RESERVED}
        if exc_info:
            fields["exc_info"] = exc_info
        self._log.log(level, str(msg), logger=self.name, **fields)

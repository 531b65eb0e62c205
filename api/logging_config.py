"""One log format for everything ``vary`` prints: Vary's own loggers, uvicorn's and Litestar's.

Why: a production log used to mix three formats (``vary:`` prints, uvicorn's ``INFO:     …`` and
Litestar's ``INFO - date - name - module - …``), so no log shipper could parse it. Now every line goes
through one root handler with one of two formatters:

* ``json`` — one JSON object per line: ``ts`` (ISO 8601, UTC, ms), ``level``, ``logger``, ``msg``,
  ``pid`` (which worker process wrote it), any structured fields the call passed in ``extra=`` (the
  access log's ``method``, ``path``, ``status``, ``duration_ms``) and ``exc`` (a traceback as one
  string). The default when the output is not a terminal (a container, a pipe, a file).
* ``text`` — the same fields for a person at a terminal: ``HH:MM:SS.mmm LEVEL logger: msg key=value``.

``VARY_LOG_FORMAT`` (``auto``/``json``/``text``) chooses; ``auto`` looks at the stream. uvicorn's and
Litestar's loggers lose their own handlers and propagate to the root, so they come out in the same
format. :func:`uvicorn_log_config` hands the same setup to uvicorn, which applies it in every worker
process it spawns (spawned workers inherit no logging setup), and ``vary serve``'s worker factory
applies it again after Litestar configured its own at app creation (``api/cli/serve.py``).

Privacy (docs/security.md, "Log masking"): no formatter adds a request's query string or a visitor
id; the access log (``api/logging_access.py``) logs the route *template*, never the path as sent.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = [
    "FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "resolve_format",
    "uvicorn_log_config",
]

#: The values ``VARY_LOG_FORMAT`` accepts.
FORMATS = ("auto", "json", "text")

#: Loggers that bring their own handlers; they are made to propagate to the one root handler instead.
FRAMEWORK_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi", "litestar")

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of msg
}


def resolve_format(value: str, stream: TextIO | None = None) -> str:
    """``json`` or ``text`` for a ``VARY_LOG_FORMAT`` value; ``auto`` is text on a terminal, else JSON.
    Raises ValueError naming the variable for anything else."""
    name = value.strip().lower()
    if name not in FORMATS:
        raise ValueError(f"VARY_LOG_FORMAT={value!r}: expected one of {', '.join(FORMATS)}")
    if name != "auto":
        return name
    out = sys.stdout if stream is None else stream
    isatty = getattr(out, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


#: Set by api/tracing.py while tracing is on: the current span's (trace id, span id) in hex, or None.
current_trace: Callable[[], tuple[str, str] | None] | None = None


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES and not k.startswith("_")}
    ids = current_trace() if current_trace is not None else None  # a line written inside a span
    if ids is not None:
        fields["trace_id"], fields["span_id"] = ids
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for the keys)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key, value in _fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _text_value(value: object) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if not text or any(c in text for c in ' "=\n\t') else text


class TextFormatter(logging.Formatter):
    """``HH:MM:SS.mmm LEVEL logger: message key=value …`` (local time), then a traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        line = f"{clock} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in _fields(record).items())
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def _replaceable(handler: logging.Handler) -> bool:
    """A root handler this setup replaces: its own from an earlier call, ``logging.basicConfig``'s plain
    stream handler, Litestar's queue handler. Others (a test's log capture, an operator's file
    handler added by a plugin) stay."""
    return (getattr(handler, "_vary", False) or type(handler) is logging.StreamHandler
            or isinstance(handler, logging.handlers.QueueHandler))


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> str:
    """Route every logger through one root handler on ``stream`` (default stdout) in format ``fmt``
    (a ``VARY_LOG_FORMAT`` value); returns the resolved format. Idempotent: calling it again (after
    Litestar configured its own handlers) replaces what is there."""
    out = sys.stdout if stream is None else stream
    resolved = resolve_format(fmt, out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(_formatter(resolved))
    handler._vary = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        if _replaceable(old):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in FRAMEWORK_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
    return resolved


def uvicorn_log_config(level: str, fmt: str) -> dict[str, Any]:
    """The ``log_config`` for ``uvicorn.run``: the same root handler and formatter as
    :func:`configure_logging` (``fmt`` already resolved), applied by uvicorn in every worker."""
    formatter = f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'TextFormatter'}"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"vary": {"()": formatter}},
        "handlers": {"vary": {"class": "logging.StreamHandler", "formatter": "vary", "stream": "ext://sys.stdout"}},
        "root": {"handlers": ["vary"], "level": level.upper()},
        # uvicorn.access is left to uvicorn: ``access_log=False`` silences it (vary.access replaces it).
        "loggers": {name: {"handlers": [], "propagate": True} for name in FRAMEWORK_LOGGERS},
    }

"""Visitor ids never reach the logs raw: log :func:`hash_id` of the id instead.

The hash (first 12 hex of SHA-256) still lets an operator correlate the log lines of one visitor, and
find them for a given id by hashing it, without the logs holding the id itself.
"""

from __future__ import annotations

import hashlib
import logging
import re
from urllib.parse import unquote_plus

__all__ = ["AccessLogRedactor", "hash_id", "install_access_log_redaction", "redact_path", "redact_target"]

_VISITOR_PATH = re.compile(r"^(/v1/visitors/)([^/]+)")


def hash_id(visitor_id: str) -> str:
    """A stable, short, non-reversible stand-in for a visitor id in log lines."""
    return "v:" + hashlib.sha256(visitor_id.encode()).hexdigest()[:12]


def redact_path(path: str) -> str:
    """A request path fit for a log line: the visitor id in ``/v1/visitors/<id>`` is hashed."""
    return _VISITOR_PATH.sub(lambda m: m.group(1) + hash_id(m.group(2)), path)


_VISITOR_QUERY = re.compile(r"((?:^|[?&])visitor_id=)([^&#]*)")
#: A delivery key sent as ``?key=`` (beacons cannot set headers) is never written to a log.
_KEY_QUERY = re.compile(r"((?:^|[?&])key=)([^&#]*)")


def redact_target(target: str) -> str:
    """A request target (path and query) fit for a log line: ``/v1/visitors/<id>`` and
    ``visitor_id=<id>`` carry the hash instead of the id; an API key in ``key=`` is masked."""
    path, sep, query = target.partition("?")
    if sep:
        query = _VISITOR_QUERY.sub(lambda m: m.group(1) + hash_id(unquote_plus(m.group(2))), query)
        query = _KEY_QUERY.sub(lambda m: m.group(1) + "***", query)
    return redact_path(path) + sep + query


class AccessLogRedactor(logging.Filter):
    """A filter for ``uvicorn.access`` (``vary serve --access-log``): hashes visitor ids in the logged
    request target. uvicorn's record args are ``(client, method, target, http_version, status)``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_target(args[2]), args[3], args[4])
        return True


def install_access_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Attach :class:`AccessLogRedactor` to the access logger once (idempotent)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, AccessLogRedactor) for f in logger.filters):
        logger.addFilter(AccessLogRedactor())

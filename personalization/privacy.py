"""Visitor ids never reach the logs raw: log :func:`hash_id` of the id instead.

The hash (first 12 hex of SHA-256) still lets an operator correlate the log lines of one visitor, and
find them for a given id by hashing it, without the logs holding the id itself.

The access log (``uvicorn.access``) prints the request target as it arrived, so its query string is
still percent-encoded while the server decodes names before reading them: ``?%6Bey=<key>``
authenticates as ``?key=``. Redaction therefore decodes every parameter name first and then hashes
``visitor_id`` and ``session_id`` and masks ``key``, whatever the case or encoding.
"""

from __future__ import annotations

import hashlib
import logging
import re
from urllib.parse import unquote, unquote_plus

__all__ = [
    "AccessLogRedactor",
    "hash_id",
    "install_access_log_redaction",
    "redact_path",
    "redact_query",
    "redact_target",
]

_VISITOR_PATH = re.compile(r"^(/+v1/+visitors/+)(.+)$", re.IGNORECASE | re.DOTALL)


def hash_id(visitor_id: str) -> str:
    """A stable, short, non-reversible stand-in for a visitor id in log lines."""
    return "v:" + hashlib.sha256(visitor_id.encode()).hexdigest()[:12]


def redact_path(path: str) -> str:
    """A request path fit for a log line: the visitor id in ``/v1/visitors/<id>`` is hashed.

    uvicorn logs the path as it arrived (percent-encoded), routes match it decoded, so the match is
    on the decoded path (``/v1/%76isitors/<id>`` is that route too) and the hash is of the decoded id;
    everything after ``/v1/visitors/`` counts as the id (an encoded ``/`` in it stays hidden)."""
    decoded = unquote(path)
    match = _VISITOR_PATH.match(decoded)
    if match is None:
        return path
    return match.group(1) + hash_id(match.group(2))


#: Query parameters whose values never reach a log line as sent: visitor and session ids are hashed,
#: an API key (``?key=``: beacons cannot set headers) is masked.
_HASHED_PARAMS = frozenset({"visitor_id", "session_id"})
_MASKED_PARAMS = frozenset({"key"})
#: How many rounds of percent-decoding a parameter name gets before it is compared: more than the
#: server applies (one), so ``%256Bey`` is masked too; a name that is still changing after that is
#: masked as a precaution.
_DECODE_ROUNDS = 4


def _param_name(raw: str) -> str | None:
    """The name a query parameter means, decoded as the server decodes it (and further), lower-cased;
    ``None`` when it keeps changing under decoding (treated as sensitive)."""
    name = raw
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote_plus(name)
        if decoded == name:
            return name.strip().lower()
        name = decoded
    return None


def _redact_param(pair: str) -> str:
    raw_name, sep, value = pair.partition("=")
    name = _param_name(raw_name)
    if name is None or name in _MASKED_PARAMS:
        return f"{raw_name}{sep}***" if sep else pair
    if name in _HASHED_PARAMS and sep:
        return f"{raw_name}={hash_id(unquote_plus(value))}"
    return pair


def redact_query(query: str) -> str:
    """A query string fit for a log line. Names are compared *after* URL-decoding, in any case
    (``%6Bey=``, ``KEY=``, ``visitor%5Fid=``), since the server decodes them before it reads them:
    ``key`` is masked, ``visitor_id`` and ``session_id`` carry :func:`hash_id` of the decoded value."""
    return "&".join(
        ";".join(_redact_param(part) for part in pair.split(";")) for pair in query.split("&")
    )


def redact_target(target: str) -> str:
    """A request target (path and query) fit for a log line: ``/v1/visitors/<id>`` and
    ``visitor_id=<id>`` / ``session_id=<id>`` carry the hash instead of the id; an API key in
    ``key=`` is masked (see :func:`redact_query`)."""
    path, sep, query = target.partition("?")
    return redact_path(path) + sep + (redact_query(query) if sep else "")


class AccessLogRedactor(logging.Filter):
    """A filter for ``uvicorn.access`` (``vary serve --access-log``): hashes visitor and session ids and
    masks keys in the logged request target (:func:`redact_target`). uvicorn's record args are
    ``(client, method, target, http_version, status)``; the target is the raw path and query."""

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

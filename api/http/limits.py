"""Input limits the framework does not set: JSON nesting depth.

Litestar parses a JSON body into plain Python objects before validating it, and a body nested a
thousand levels deep makes that parse raise ``RecursionError`` — a 500 from input. Vary's payloads
are at most a few levels deep, so a ``before_request`` hook refuses anything deeper than
:data:`MAX_DEPTH` with a 400 that says so. The check is two ``bytes.count`` calls for ordinary bodies;
only a body with many brackets pays for a real scan (strings stripped first, so brackets inside text
do not count).
"""

from __future__ import annotations

import re

from litestar import Request
from litestar.exceptions import ClientException

__all__ = ["MAX_DEPTH", "json_depth", "check_body", "check_json_depth"]

MAX_DEPTH = 64
_STRING = re.compile(rb'"(?:\\.|[^"\\])*"')
_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(body: bytes) -> int:
    """Deepest nesting of ``[``/``{`` in a JSON text (brackets inside strings ignored)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def check_body(body: bytes, content_type: str = "") -> None:
    """Refuse a body that is not UTF-8 (unless multipart) or nested deeper than :data:`MAX_DEPTH`
    (a 400 saying which); shared by the hook and the lean personalize path (``api/http/hot_path.py``)."""
    if not body.isascii() and not content_type.startswith("multipart/"):
        try:  # Litestar's JSON decode lets UnicodeDecodeError escape as a 500
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClientException(detail=f"request body is not valid UTF-8 (byte {exc.start})") from None
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return None
    if json_depth(body) > MAX_DEPTH:
        raise ClientException(
            detail=f"request body is nested deeper than {MAX_DEPTH} levels; Vary's payloads never are"
        )
    return None


async def check_json_depth(request: Request) -> None:
    """``before_request`` hook: refuse bodies nested deeper than :data:`MAX_DEPTH`."""
    if request.method not in {"POST", "PUT", "PATCH"}:
        return None
    check_body(await request.body(), request.headers.get("content-type", ""))
    return None

"""Which visitor a spooled entry belongs to, and the tombstones that keep erased visitors out of replays.

A spool or journal entry is an exposure (``{"x": {…"visitor_id"…}}``), a sticky assignment
(``{"a": [visitor, experience, variant]}``) or an event (``{"visitor_id": …}``). An erase that cannot
rewrite a spool file (another live worker holds it) leaves a tombstone in the file's directory
(:data:`ERASED_FILE`: a BLAKE2b digest of the visitor id and the erase time, one a line, kept
:data:`TOMBSTONE_TTL_S`), and :func:`~personalization.store.spool.replay_spool` drops, with
:func:`erased_before`, the visitor's entries recorded before that time. Written by
:mod:`personalization.store.spool_erasure`; read here so the spool needs nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from personalization.store.keys import visitor_tag

__all__ = ["ERASED_FILE", "TOMBSTONE_TTL_S", "entry_visitor", "erased_before", "read_tombstones", "visitor_digest"]

#: The tombstone file in a spool directory.
ERASED_FILE = "erased"
#: How long a tombstone is kept: a week, far longer than a live worker's spool waits while Redis answers.
TOMBSTONE_TTL_S = 7 * 86_400.0


class _Visitor(msgspec.Struct):
    visitor_id: str | None = None
    ts: float | None = None


class _Entry(msgspec.Struct):
    visitor_id: str | None = None
    ts: float | None = None
    x: _Visitor | None = None
    a: list[Any] | None = None


_DECODE = msgspec.json.Decoder(_Entry)


def _decoded(raw: bytes) -> _Entry | None:
    try:
        return _DECODE.decode(raw)
    except msgspec.DecodeError:
        return None


def _owner(raw: bytes) -> tuple[str | None, float | None]:
    """The visitor of an entry and when it was recorded (an assignment carries no time)."""
    entry = _decoded(raw)
    if entry is None:
        return None, None
    if entry.x is not None:
        return entry.x.visitor_id, entry.x.ts
    if entry.a:
        return str(entry.a[0]), None
    return entry.visitor_id, entry.ts


def entry_visitor(raw: bytes) -> str | None:
    """The visitor a spool or journal entry belongs to (``None``: anonymous or unreadable)."""
    return _owner(raw)[0]


def visitor_digest(visitor_id: str) -> str:
    """What a tombstone stores instead of the id: the visitor's hash tag, the digest their Redis keys
    carry already (:func:`~personalization.store.keys.visitor_tag`)."""
    return visitor_tag(visitor_id)


def read_tombstones(path: Path) -> list[tuple[str, float]]:
    """(digest, erase time) of each tombstone line of ``path``; none when it is missing."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return []
    found = []
    for line in text.splitlines():
        digest, _, ts = line.partition(" ")
        try:
            found.append((digest, float(ts)))
        except ValueError:
            continue
    return found


def erased_before(directory: Path) -> Callable[[bytes], bool] | None:
    """The replay filter of a spool directory: true for an entry of a visitor erased after the entry
    was recorded (``None`` when the directory holds no tombstone)."""
    tombstones = {digest: ts for digest, ts in read_tombstones(Path(directory) / ERASED_FILE)}
    if not tombstones:
        return None

    def unwanted(raw: bytes) -> bool:
        visitor, ts = _owner(raw)
        if not visitor:
            return False
        erased_at = tombstones.get(visitor_digest(visitor))
        return erased_at is not None and (ts is None or ts <= erased_at)

    return unwanted

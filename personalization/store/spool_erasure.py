"""Erasing a visitor from the local spool and journal files, so nothing of theirs comes back on replay.

Exposures and events Redis could not take wait in spool files, and a worker's journal holds what it
acknowledged but has not written yet (:mod:`personalization.store.spool`,
:mod:`personalization.store.journal`); replaying them after an erase would write the visitor back.
So an erase walks the spool directories (``<data dir>/spool`` and ``…/spool/events``):

* a file this process holds open (its own spools and journal rings) is rewritten through its
  own object (:meth:`Spool.drop`, :meth:`Ring.drop <personalization.store.ring.Ring.drop>`), under its
  own lock;
* a file no live process holds (a killed worker's, replayed at the next start) is opened, locked
  and rewritten the same way (a dead worker's journal rings are turned into a spool file first);
* a file another live worker holds cannot be opened (its lock), so the erase leaves a **tombstone**
  in that directory and the worker's replay drops the visitor's entries recorded before the erase
  (:mod:`personalization.store.tombstones`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

from personalization.store.ring import RING_SUFFIX, convert_orphaned_rings, open_rings
from personalization.store.spool import Spool, SpoolBusy, open_spools
from personalization.store.tombstones import (
    ERASED_FILE,
    TOMBSTONE_TTL_S,
    entry_visitor,
    read_tombstones,
    visitor_digest,
)

__all__ = ["SpoolErasure", "erase_from_spools"]


class SpoolErasure(msgspec.Struct, frozen=True, kw_only=True):
    """What an erase did to the local files: entries dropped, files rewritten, and live files of
    other workers left to their replay (with a tombstone)."""

    entries: int = 0
    files: int = 0
    busy: int = 0


def _write_tombstone(directory: Path, visitor_id: str, now: float) -> None:
    """Add the visitor's tombstone, dropping expired ones (rewritten atomically)."""
    path = directory / ERASED_FILE
    lines = [line for line in read_tombstones(path) if now - line[1] < TOMBSTONE_TTL_S]
    lines.append((visitor_digest(visitor_id), now))
    temporary = directory / f".{ERASED_FILE}.{os.getpid()}"
    temporary.write_text("".join(f"{digest} {ts:.3f}\n" for digest, ts in lines), encoding="ascii")
    os.replace(temporary, path)


def erase_from_spools(directories: Iterable[Path], visitor_id: str, now: float | None = None) -> SpoolErasure:
    """Drop ``visitor_id``'s entries from every ``*.spool`` file in ``directories`` (see the
    module docstring). Blocking file work: run it off the event loop."""
    now = time.time() if now is None else now
    mine = open_spools()
    rings = open_rings()
    entries = files = busy = 0

    def unwanted(raw: bytes) -> bool:
        return entry_visitor(raw) == visitor_id

    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            continue
        others = False
        here = directory.resolve()
        for ring in rings.values():  # this process's own journal rings
            if ring.path.parent.resolve() == here and (dropped := ring.drop(unwanted)):
                entries += dropped
                files += 1
        # A dead worker's rings (or one of ours closed meanwhile) become a spool, dropped from below;
        # a ring still there after that is another live worker's.
        convert_orphaned_rings(directory)
        for path in directory.glob(f"*{RING_SUFFIX}"):
            if path.resolve() not in rings:
                busy += 1
                others = True
        for path in sorted(directory.glob("*.spool")):
            spool = mine.get(path.resolve())
            opened = spool is None
            if spool is None:
                try:
                    spool = Spool(path, kind="erase", create=False)
                except FileNotFoundError:  # replayed and removed since the listing: nothing to erase
                    continue
                except SpoolBusy:
                    busy += 1
                    others = True
                    continue
            try:
                dropped = spool.drop(unwanted)
            finally:
                if opened:
                    spool.close()
            if dropped:
                entries += dropped
                files += 1
        if others:
            _write_tombstone(directory, visitor_id, now)
    return SpoolErasure(entries=entries, files=files, busy=busy)

"""Opening a worker's own file (spool, journal ring) locked, so no other process ever sees it unlocked.

Why: a starting worker treats every spool or ring file whose lock is free as a dead worker's and
replays, converts and deletes it. A file created with ``open`` and locked with ``flock`` a moment
later is free in between; a worker starting alongside could take it for an orphan then, and delete
it under its owner (who would go on writing to a file no one replays). A new file is therefore
created under a name no orphan scan matches (``<name>.new``), locked, and only then renamed into
place: the lock belongs to the open file, so it holds across the rename.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["open_locked"]

#: What a new file is called until it is locked (no orphan scan's pattern ends with it).
STAGING_SUFFIX = ".new"


def open_locked(path: Path, flags: int, mode: str, busy: type[OSError], create: bool = True) -> BinaryIO:
    """``path`` opened unbuffered with ``os.open`` ``flags`` and Python ``mode``, exclusively locked;
    raises ``busy`` when another process holds the lock. ``create``: a missing file is made (locked
    under its staging name first); without it (another worker's file, opened by an orphan scan or an
    erase) a missing one raises ``FileNotFoundError``: its owner or another scan dealt with it, and
    nothing is made in its place. A creator killed before the rename leaves an empty ``<name>.new``,
    which nothing reads."""
    if create and not path.exists():
        staging = path.with_name(path.name + STAGING_SUFFIX)
        file = _locked(staging, flags | os.O_CREAT, mode, busy)
        os.rename(staging, path)
        return file
    return _locked(path, flags, mode, busy)


def _locked(path: Path, flags: int, mode: str, busy: type[OSError]) -> BinaryIO:
    file: BinaryIO = open(os.open(path, flags, 0o600), mode, buffering=0)  # type: ignore[assignment] # noqa: SIM115 - held by the caller
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        file.close()
        raise busy(f"{path} is in use by another worker") from None
    return file

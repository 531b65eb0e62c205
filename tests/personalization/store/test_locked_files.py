"""A worker's new spool or journal ring is never seen unlocked by another worker's orphan scan.

Real processes, real files, real ``flock``: one process creates (and discards) spools and rings as
fast as it can while this one scans the directory for orphans as fast as it can, as two workers
starting together do. Before new files were locked under a staging name and renamed into place,
three runs of this test caught 1, 2 and 0 files taken from their creator (the creator then fails to
start, ``SpoolBusy`` on its own file, or writes on into a file the scan deleted).
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from personalization.store.ring import Ring, RingBusy, convert_orphaned_rings
from personalization.store.spool import Spool, SpoolBusy, orphaned_spools

CREATIONS = 1_500


def _create(directory: Path, count: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Create ``count`` spools and rings one after another; count each one that was not ours alone
    once created (taken by the scan, or deleted under us)."""
    stolen = 0
    for i in range(count):
        for path, opener, busy in (
            (directory / f"exposures-{i}.spool", lambda p: Spool(p, fsync_interval_s=60), SpoolBusy),
            (directory / f"journal-w{i}-1.ring", lambda p: Ring(p, capacity=4096, fsync_interval_s=60), RingBusy),
        ):
            try:
                owned = opener(path)
            except busy:
                stolen += 1
                continue
            if not path.exists() or os.stat(path).st_ino != os.fstat(owned._file.fileno()).st_ino:
                stolen += 1
            owned.discard()
    results.put(stolen)


def test_an_orphan_scan_never_takes_a_file_being_created(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of this process's threads (fsync, logging)
    results = context.Queue()
    creator = context.Process(target=_create, args=(tmp_path, CREATIONS, results))
    creator.start()
    scans = 0
    while creator.is_alive():
        convert_orphaned_rings(tmp_path)
        for spool in orphaned_spools(tmp_path):
            spool.close()
        scans += 1
    creator.join()
    assert creator.exitcode == 0
    assert results.get(timeout=5) == 0
    assert scans > 100  # the scans did run alongside the creations
    assert not list(tmp_path.glob("*.spool")) and not list(tmp_path.glob("*.ring"))


def test_opening_another_workers_file_that_is_gone_makes_nothing(tmp_path: Path) -> None:
    """An orphan scan or an erase opens files it listed; one removed since (replayed, converted) raises
    ``FileNotFoundError`` and nothing is made in its place (a ring would otherwise be allocated anew)."""
    for opener in (
        lambda p: Spool(p, create=False),
        lambda p: Ring(p, capacity=4096, create=False),
    ):
        with pytest.raises(FileNotFoundError):
            opener(tmp_path / "gone")
    assert list(tmp_path.iterdir()) == []
    assert list(orphaned_spools(tmp_path)) == [] and convert_orphaned_rings(tmp_path) == 0

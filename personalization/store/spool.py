"""The spool: a local append-only file that keeps exposures Redis could not take.

When Redis is down or slow, or the in-memory exposure queue is full, the exposure writer appends the
batch here instead of dropping it or growing memory; when Redis answers again the spool is replayed
in order and truncated. Every spooled batch carries a batch id, and a batch is written to Redis by
one Lua script that first sets a marker ``{<stream>}:batch:<id>`` (kept a day, in the stream's
cluster slot), so a batch that did reach Redis before its reply was lost is skipped on replay: no
exposure is written twice.

Events Redis could not take use the same kind of file (``<data dir>/spool/events/``, entries are
events): :class:`personalization.measurement.recorder.EventRecorder` spools and replays them, idempotent by
``event_id`` instead of batch markers.

Replaying is the same for both kinds (:func:`replay_spool`, run by :func:`replay_forever` every
second): the spool is written back in the order it was appended, through the owner's own idempotent
write, resuming past what was already written while new batches keep arriving, and truncated only
once it has caught up.

Erasing a visitor (:mod:`personalization.store.spool_erasure`) rewrites a spool without the visitor's
entries (:meth:`Spool.drop`): the kept lines go to a new file, locked before it is renamed over the
old one, so the file is whole at every instant and stays owned by its worker. A replay running
meanwhile notices the rewrite (:attr:`Spool.generation`) and starts over from the top: offsets of
the old file mean nothing in the new one, and writing a batch twice is harmless.

File format: one record per line, ``<batch id> <msgspec JSON list of entries>\\n``; a torn last line
(a crash mid-write) is ignored on replay.

Durability (documented policy, like Redis's ``appendfsync everysec``): every append is written to
the operating system at once (it survives the process being killed) and ``fsync``-ed at most once
per ``fsync_interval_s`` by a background thread (a machine crash may lose up to that much; the
event loop never waits on the disk). The file is bounded by
``max_bytes``; past it, new batches are refused and counted (``rejected``), never silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec

from personalization.store.background_fsync import start_fsync_thread
from personalization.store.locked_files import open_locked
from personalization.store.ring import convert_orphaned_rings, drop_entries
from personalization.store.tombstones import erased_before

__all__ = [
    "Spool",
    "SpoolBusy",
    "SpooledBatch",
    "open_spools",
    "orphaned_spools",
    "replay_forever",
    "replay_spool",
]

log = logging.getLogger("vary.spool")


class SpoolBusy(OSError):
    """Another live process owns this spool file."""


def orphaned_spools(directory: Path) -> Iterator[Spool]:
    """Spool files left by workers that are gone (their lock is free), opened and locked for replay.
    A live worker holds its own file's lock, so it is never among them. A dead worker's journal
    rings become a spool file first (:func:`~personalization.store.ring.convert_orphaned_rings`)."""
    convert_orphaned_rings(Path(directory))
    for path in sorted(Path(directory).glob("*.spool")):
        try:
            yield Spool(path, create=False)
        except (SpoolBusy, FileNotFoundError):  # a live worker's, or gone since the listing
            continue


#: Every spool this process holds open, by resolved path: an erase reaches them through their own
#: lock (another process's live spools are locked against it).
_OPEN: weakref.WeakValueDictionary[Path, Spool] = weakref.WeakValueDictionary()


def open_spools() -> dict[Path, Spool]:
    """The spools (and journal segments) this process holds open, by resolved path."""
    return dict(_OPEN)


class SpooledBatch(msgspec.Struct, frozen=True):
    batch_id: str
    entries: list[msgspec.Raw]


class Spool:
    """Append-only, bounded, replayable (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        max_bytes: int = 256 * 1024 * 1024,
        fsync_interval_s: float = 1.0,
        kind: str = "exposures",
        create: bool = True,
    ) -> None:
        """``create=False`` opens another worker's existing file (a replay or an erase), never makes one:
        a file gone meanwhile raises ``FileNotFoundError`` (:func:`~personalization.store.locked_files.open_locked`)."""
        self.path = Path(path)
        #: What the entries are (``exposures``, ``events``): for log lines only.
        self.kind = kind
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._fsync_interval_s = fsync_interval_s
        self._lock = threading.Lock()
        #: Unbuffered: each append is one ``write`` syscall straight to the OS, with no Python buffer
        #: to flush (issue 22: with the size kept below, 1.66 → 1.22 µs per append of three exposures).
        #: One owner per file: a live worker's spool is never replayed by another (a new one is locked
        #: before it appears under its name, :mod:`~personalization.store.locked_files`).
        self._file: BinaryIO = open_locked(self.path, os.O_WRONLY | os.O_APPEND, "ab", SpoolBusy, create)
        #: The file's length, kept by every write and truncation under ``_lock`` (the owner's flock
        #: means no one else writes it) instead of a ``tell()`` per append.
        self._size = self._file.seek(0, os.SEEK_END)
        self.rejected = 0
        #: Bumped by every :meth:`drop` (the file was rewritten: byte offsets start over).
        self.generation = 0
        self._replaced: list[BinaryIO] = []  # the handle a rewrite replaced, closed at the next one
        _OPEN[self.path.resolve()] = self
        #: ``fsync`` runs on its own thread: on a busy disk it can take hundreds of milliseconds, and
        #: the append is called from the event loop, where that would stall every request in flight.
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._syncer = start_fsync_thread(
            lambda: self._file.fileno(), self._dirty, self._closing, fsync_interval_s, f"spool-fsync-{kind}"
        )

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        """Bytes waiting to be replayed."""
        return self.size

    def append(self, batch_id: str, entries: list[bytes]) -> bool:
        """Keep one batch; ``False`` (and counted) when the spool is full."""
        line = batch_id.encode() + b" [" + b",".join(entries) + b"]\n"
        with self._lock:
            if self._size + len(line) > self.max_bytes:
                self.rejected += len(entries)
                log.error(
                    "spool %s full (%d bytes): %d %s refused", self.path, self.max_bytes, len(entries), self.kind
                )
                return False
            try:
                _write_all(self._file, line)  # in the OS now: survives the process being killed
            except OSError:  # perhaps part of it was written: the file says how long it is now
                self._size = os.fstat(self._file.fileno()).st_size
                raise
            self._size += len(line)
        # The syncer thread fsyncs within fsync_interval_s. Already set: it has not cleared the flag
        # yet, so its next fsync (after the clear) covers this write; skipping the set saves a lock
        # round per request (Event.set takes a Condition's lock).
        if not self._dirty.is_set():
            self._dirty.set()
        return True

    def batches(self) -> Iterator[SpooledBatch]:
        """The spooled batches in the order they were written (a torn last line is skipped)."""
        for batch, _ in self.read_from(0):
            yield batch

    def read_from(self, offset: int = 0) -> Iterator[tuple[SpooledBatch, int]]:
        """The batches from byte ``offset`` on, in the order written, each with the offset just past
        it, so a replay can resume after what it already wrote while new batches keep being
        appended. A torn last line (a crash mid-write) is skipped, an unreadable record logged."""
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            position = offset
            for line in handle:
                if not line.endswith(b"\n"):
                    log.warning("spool %s: ignoring a torn last record", self.path)
                    return
                position += len(line)
                batch_id, _, payload = line.rstrip(b"\n").partition(b" ")
                try:
                    entries = msgspec.json.decode(payload, type=list[msgspec.Raw])
                except msgspec.DecodeError:
                    log.error("spool %s: skipping an unreadable record", self.path)
                    continue
                yield SpooledBatch(batch_id.decode(), entries), position

    def clear_if_size(self, size: int, generation: int | None = None) -> bool:
        """Forget everything, but only if nothing was appended since the spool was ``size`` bytes
        long (and, given ``generation``, it was not rewritten since) — checked and cleared under the
        append lock; ``False`` leaves the spool untouched."""
        with self._lock:
            if self._size != size or (generation is not None and generation != self.generation):
                return False
            self._truncate()
            os.fsync(self._file.fileno())
        return True

    def drop(self, unwanted: Callable[[msgspec.Raw], bool]) -> int:
        """Rewrite the file without the entries ``unwanted`` picks; returns how many were dropped.

        The kept records go to ``.<name>.rewrite``, which is locked, ``fsync``-ed and renamed over
        the spool (see the module docstring); a record left without entries goes altogether. A torn
        last line is kept as it was (replay ignores it). Nothing is written when nothing matches.
        """
        with self._lock:
            kept: list[bytes] = []
            dropped = 0
            with open(self.path, "rb") as handle:
                for line in handle:
                    if not line.endswith(b"\n"):  # a torn last record: kept as it was
                        kept.append(line)
                        continue
                    record, count, emptied = drop_entries(line[:-1], unwanted)
                    dropped += count
                    if not (count and emptied):  # a record left without entries goes altogether
                        kept.append(record + b"\n")
            if not dropped:
                return 0
            temporary = self.path.with_name(f".{self.path.name}.rewrite")
            buffered = open(temporary, "ab")  # noqa: SIM115 - its raw file becomes the spool's handle
            try:
                fcntl.flock(buffered.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                buffered.truncate(0)
                buffered.writelines(kept)
                buffered.flush()
                os.fsync(buffered.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                buffered.close()
                temporary.unlink(missing_ok=True)
                raise
            fresh: BinaryIO = buffered.detach()  # type: ignore[assignment] # unbuffered, like the first handle
            # The syncer thread may be about to fsync the old handle: close it only at the next rewrite.
            for old in self._replaced:
                old.close()
            self._replaced = [self._file]
            self._file = fresh
            self._size = sum(map(len, kept))
            self.generation += 1
        self._dirty.set()
        return dropped

    def clear(self) -> None:
        """Forget everything (after a successful replay)."""
        with self._lock:
            self._truncate()
            os.fsync(self._file.fileno())

    def empty(self) -> None:
        """Forget everything without waiting for the disk (the journal calls this from the event
        loop after every batch): the truncation reaches the disk with the next background ``fsync``."""
        with self._lock:
            self._truncate()
        self._dirty.set()

    def _truncate(self) -> None:
        """Empty the file (the caller holds ``_lock``)."""
        self._file.truncate(0)
        self._file.seek(0)
        self._size = 0

    def discard(self) -> None:
        """Close and delete the file without syncing it (its contents are no longer needed) and
        without waiting for the syncer thread, which stops on its own."""
        self._closing.set()
        self._dirty.set()
        with self._lock:
            if not self._file.closed:
                self._file.close()
            self._close_replaced()
        self.path.unlink(missing_ok=True)

    def _close_replaced(self) -> None:
        if _OPEN.get(self.path.resolve()) is self:
            del _OPEN[self.path.resolve()]
        for old in self._replaced:
            old.close()
        self._replaced = []

    def close(self, remove_if_empty: bool = True) -> None:
        self._closing.set()
        self._dirty.set()
        if self._syncer.is_alive() and self._syncer is not threading.current_thread():
            self._syncer.join(timeout=5.0)
        with self._lock:
            self._close_replaced()
            if self._file.closed:
                return
            os.fsync(self._file.fileno())
            empty = self._size == 0
            self._file.close()
        if empty and remove_if_empty:
            self.path.unlink(missing_ok=True)


def _write_all(file: BinaryIO, data: bytes) -> None:
    """Write all of ``data`` to an unbuffered file: a raw ``write`` may take less than it was given
    (a signal, a nearly full disk), which a buffered file's ``flush`` used to retry for us."""
    written = file.write(data) or 0
    if written < len(data):
        view = memoryview(data)
        while written < len(data):
            written += file.write(view[written:]) or 0


async def replay_spool(spool: Spool, write: Callable[[str, list[msgspec.Raw]], Awaitable[int]]) -> int:
    """Write everything ``spool`` holds through ``write(batch id, entries)``, in the order it was
    appended, then truncate it; returns the sum of what ``write`` returned. Consecutive records with
    one batch id go in one call (a journal records a batch request by request). ``write`` must be
    idempotent (batch markers, event markers): a failure propagates and keeps the spool whole, and
    the next replay sends it again, harmlessly.

    Entries of a visitor erased while they waited (a tombstone in the spool's directory,
    :mod:`personalization.store.tombstones`) are left out.

    Batches appended while this replay awaits Redis land behind it: the spool is truncated only if
    nothing was appended since the last record read (atomically with appends), else the new tail
    is replayed too. What is left after the last whole record is a torn one (a crash cut it short:
    never acknowledged, so not ours to keep) and goes with the truncation.
    """
    replayed = 0
    offset = 0
    while True:
        unwanted = erased_before(spool.path.parent)  # read each pass: an erase may add a tombstone
        generation = spool.generation
        size = spool.size
        end = offset
        for batch_id, records in itertools.groupby(spool.read_from(offset), key=lambda read: read[0].batch_id):
            entries: list[msgspec.Raw] = []
            for spooled, position in records:
                end = position
                entries.extend(e for e in spooled.entries if unwanted is None or not unwanted(e))
            if spool.generation != generation:
                break  # rewritten by an erase: what was read here may be erased; the new file decides
            if entries:
                replayed += await write(batch_id, entries)
        if spool.generation != generation:
            offset = 0  # offsets of the old file mean nothing in the new one: from the top
            continue
        if spool.clear_if_size(end if end != offset else size, generation):
            return replayed
        offset = end


async def replay_forever(
    spool: Spool | None,
    replay: Callable[[], Awaitable[object]],
    *,
    interval_s: float,
    logger: logging.Logger,
    what: str,
    stop: asyncio.Event | None = None,
    before: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Every ``interval_s``, ``before()`` (if given: what a restarted Redis lost, sent again,
    :mod:`personalization.store.recent_batches`) then ``replay()`` when ``spool`` holds something,
    until ``stop`` is set (or the task is cancelled). A failure (Redis still away) is logged as
    ``<what> replay waits for Redis`` and retried at the next tick: the spool is kept whole meanwhile."""
    while stop is None or not stop.is_set():
        if stop is None:
            await asyncio.sleep(interval_s)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
        try:
            if before is not None:
                await before()
            if spool is not None and spool.size > 0:
                await replay()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever Redis says, the spool is kept and retried
            logger.info("%s replay waits for Redis (%s)", what, type(exc).__name__)

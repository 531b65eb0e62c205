"""A memory-mapped record ring: the exposure journal's file, written with no system call per record.

The journal (:mod:`personalization.store.journal`) records every request's exposures before the
response, so a killed worker loses nothing it acknowledged. Appending each record with ``write``
cost 12–15 % of a worker's CPU under load (issue 22, seventh round: the ``write`` on ext4, the
per-batch ``ftruncate``, and the line built for them). Here a record is copied into a ``MAP_SHARED``
mapping of the file instead: those pages are the file's page cache, so they outlive the process
exactly as a written file does (``SIGKILL``, the OOM killer), and a background thread ``fsync``-s the
file at most once per ``fsync_interval_s`` (a machine crash may lose up to that much, the documented
policy, like Redis's ``appendfsync everysec``). The event loop never waits on the disk.

Layout: a 4 KiB header page (magic, format version, the **start** offset of the oldest live record),
then the record area, used as a ring. A record is ``<u32 length><u32 crc32><payload>``; the payload is
a spool line without its newline, ``<batch id> [entries]``. Length 0 ends the records; length
``0xFFFFFFFF`` says "continue at the top of the record area".

Crash safety without a system call: an append copies the payload first, then writes a zero length
just past it (the new end), and only then the record's own length. A process killed part-way leaves
the record's length 0 (or the previous end marker), so the record is not there: it was never
acknowledged either, since :meth:`Ring.append` had not returned. The CRC guards against a machine
crash that persisted the header of a record but not all its body pages; a reader stops at the first
record whose CRC does not match.

As batches are done (in Redis or in the spool), :meth:`Ring.advance` moves the start past them and
stores it in the header (an aligned 8-byte store); when nothing is left the ring starts again at the
top, so a calm worker keeps reusing the same few pages. A record that does not fit makes
:meth:`Ring.append` return ``False``; the journal then opens another ring (a numbered file) and
retires the full one until its batches are done.

A dead worker's rings are turned into one spool file (:func:`convert_orphaned_rings`, called by
:func:`~personalization.store.spool.orphaned_spools`), replayed like any spool: consecutive records with
one batch id are one batch, so a batch whose records span two rings is still one batch.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import mmap
import os
import struct
import threading
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec

from personalization.store.background_fsync import start_fsync_thread
from personalization.store.locked_files import open_locked

__all__ = ["RING_SUFFIX", "Ring", "RingBusy", "convert_orphaned_rings", "drop_entries", "open_rings"]

log = logging.getLogger("vary.journal")

#: File-name suffix of rings (``journal-<name>-<n>.ring``).
RING_SUFFIX = ".ring"
_MAGIC = b"VARYRING"
_VERSION = 1
#: The header page: magic (8), version (u32), spare (u32), start offset (u64).
_HEADER = 4096
_START_AT = 16
_RECORD = struct.Struct("<II")
_START = struct.Struct("<Q")
_WRAP = 0xFFFFFFFF
_END = b"\0" * _RECORD.size


class RingBusy(OSError):
    """Another live process owns this ring file."""


#: Every ring this process holds open, by resolved path (an erase reaches them through their lock).
_OPEN: weakref.WeakValueDictionary[Path, Ring] = weakref.WeakValueDictionary()


def open_rings() -> dict[Path, Ring]:
    """The rings this process holds open, by resolved path."""
    return dict(_OPEN)


class Ring:
    """One ring file, locked by its owner for its lifetime; see the module docstring.

    ``capacity`` is the record area's size; an existing file (an orphan being read) keeps its own.
    ``create=False`` (an orphan being read) never makes the file: one gone meanwhile raises
    ``FileNotFoundError``.
    """

    def __init__(
        self, path: Path, capacity: int = 8 * 1024 * 1024, fsync_interval_s: float = 1.0, create: bool = True
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _open_locked(self.path, create)
        size = os.fstat(self._file.fileno()).st_size
        fresh = size < _HEADER + 2 * _RECORD.size
        if fresh:
            size = _HEADER + max(capacity, 256)
            os.ftruncate(self._file.fileno(), 0)
            # The blocks now, so a store into the mapping never meets a full disk (SIGBUS). Where the
            # system or file system cannot (macOS has no posix_fallocate), pages come on first use.
            fallocate = getattr(os, "posix_fallocate", None)
            try:
                if fallocate is not None:
                    fallocate(self._file.fileno(), 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    self._file.close()
                    raise
            os.ftruncate(self._file.fileno(), size)
        self._map = mmap.mmap(self._file.fileno(), size)
        self._end = size
        if fresh or self._map[:8] != _MAGIC:
            self._map[:_HEADER] = _MAGIC + struct.pack("<II", _VERSION, 0) + _START.pack(_HEADER) + bytes(_HEADER - 24)
            self._map[_HEADER : _HEADER + _RECORD.size] = _END
        self._lock = threading.Lock()
        #: Offset just past each live record, oldest first (what :meth:`advance` moves the start to).
        self._ends: deque[int] = deque()
        #: Records appended, ever; :meth:`advance` takes a count of them.
        self.count = 0
        self._advanced = 0
        self._start = _START.unpack_from(self._map, _START_AT)[0]
        self._position = self._start
        for _payload, end in self._scan():  # an orphan's records (a fresh ring has none)
            self._ends.append(end)
            self._position = end
        self.count = len(self._ends)
        self._size = self._live_bytes()
        self._replaced: list[tuple[mmap.mmap, BinaryIO]] = []  # closed at the next rewrite or close
        _OPEN[self.path.resolve()] = self
        self._dirty = threading.Event()
        self._closing = threading.Event()
        # The pages of a shared mapping are the file's: an fsync of the file writes them (Linux).
        self._syncer = start_fsync_thread(
            lambda: self._file.fileno(), self._dirty, self._closing, fsync_interval_s, "journal-fsync"
        )

    # -- writing ---------------------------------------------------------------------------------

    def append(self, payload: bytes) -> bool:
        """Copy one record in; ``False`` (nothing written) when the ring has no room for it."""
        length = len(payload)
        need = _RECORD.size + length + _RECORD.size  # the record and the end marker after it
        with self._lock:
            mapping, position, start = self._map, self._position, self._start
            at = position
            if position >= start:  # live records (if any) lie in [start, position)
                if position + need > self._end:
                    at = _HEADER  # wrap: the record goes at the top, before the start
                    if _HEADER + need > start:
                        return False
            elif position + need > start:  # wrapped already: the room is [position, start)
                return False
            body = at + _RECORD.size
            mapping[body : body + length] = payload
            mapping[body + length : body + length + _RECORD.size] = _END
            _RECORD.pack_into(mapping, at, length, zlib.crc32(payload))
            if at != position:  # only now is the wrapped record reachable from the start
                _RECORD.pack_into(mapping, position, _WRAP, 0)
            end = body + length
            self._position = end
            self._ends.append(end)
            self.count += 1
            self._size += end - at + (self._end - position if at != position else 0)
        if not self._dirty.is_set():  # the syncer fsyncs within fsync_interval_s (see Spool.append)
            self._dirty.set()
        return True

    def advance(self, count: int) -> None:
        """The first ``count`` records ever appended are done: the start moves past them (stored in
        the header). When none is left, the ring starts again at the top."""
        with self._lock:
            ends = self._ends
            start = self._start
            while self._advanced < count and ends:
                start = ends.popleft()
                self._advanced += 1
            if start == self._start:
                return
            if not ends and start != _HEADER:
                # Empty: start over at the top. The end marker goes there first, so a reader sees
                # nothing whichever start it reads.
                self._map[_HEADER : _HEADER + _RECORD.size] = _END
                start = self._position = _HEADER
            self._start = start
            _START.pack_into(self._map, _START_AT, start)
            self._size = self._live_bytes()

    @property
    def size(self) -> int:
        """Bytes of live records (0: everything in the ring is done)."""
        return self._size

    @property
    def pending(self) -> int:
        """Live records (appended, not yet advanced past)."""
        return len(self._ends)

    def _live_bytes(self) -> int:
        start, position = self._start, self._position
        return position - start if position >= start else (self._end - start) + (position - _HEADER)

    # -- reading ---------------------------------------------------------------------------------

    def payloads(self) -> list[bytes]:
        """The live records' payloads, oldest first."""
        with self._lock:
            return [payload for payload, _ in self._scan()]

    def _scan(self) -> Iterator[tuple[bytes, int]]:
        """``(payload, offset past it)`` from the start to the end marker; stops at a torn record."""
        mapping, end = self._map, self._end
        at = self._start
        wrapped = False
        while _HEADER <= at <= end - _RECORD.size:
            length, crc = _RECORD.unpack_from(mapping, at)
            if length == 0:
                return
            if length == _WRAP:
                if wrapped:
                    break
                wrapped, at = True, _HEADER
                continue
            body = at + _RECORD.size
            if body + length > end:
                break
            payload = mapping[body : body + length]
            if zlib.crc32(payload) != crc:
                break
            at = body + length
            yield payload, at
        log.warning("journal ring %s: ignoring a torn record", self.path)

    # -- erasing ---------------------------------------------------------------------------------

    def drop(self, unwanted: Callable[[msgspec.Raw], bool]) -> int:
        """Rewrite the ring without the entries ``unwanted`` picks; returns how many were dropped.

        As :meth:`Spool.drop <personalization.store.spool.Spool.drop>` does: the kept records go to a
        new locked file, ``fsync``-ed and renamed over this one, so the file is whole at every
        instant. A record left without entries stays, empty, so record counts (what
        :meth:`advance` takes) still mean the same records. Nothing is written when nothing matches.
        """
        with self._lock:
            if self._map.closed:  # discarded meanwhile (its batches were written): nothing to rewrite
                return 0
            kept: list[bytes] = []
            dropped = 0
            for payload, _ in self._scan():
                record, count, _ = drop_entries(payload, unwanted)
                kept.append(record)
                dropped += count
            if not dropped:
                return 0
            size = max(self._end, _HEADER + sum(len(p) + _RECORD.size for p in kept) + _RECORD.size)
            temporary = self.path.with_name(f".{self.path.name}.rewrite")
            file = _open_locked(temporary)
            try:
                os.ftruncate(file.fileno(), 0)
                os.ftruncate(file.fileno(), size)
                mapping = mmap.mmap(file.fileno(), size)
                mapping[:_HEADER] = self._map[:_HEADER]
                _START.pack_into(mapping, _START_AT, _HEADER)
                at, ends = _HEADER, deque()
                for payload in kept:
                    mapping[at + _RECORD.size : at + _RECORD.size + len(payload)] = payload
                    _RECORD.pack_into(mapping, at, len(payload), zlib.crc32(payload))
                    at += _RECORD.size + len(payload)
                    ends.append(at)
                mapping[at : at + _RECORD.size] = _END
                mapping.flush()
                os.replace(temporary, self.path)
            except BaseException:
                file.close()
                temporary.unlink(missing_ok=True)
                raise
            # The syncer may be about to fsync the old file: close it only at the next rewrite.
            for old_map, old_file in self._replaced:
                old_map.close()
                old_file.close()
            self._replaced = [(self._map, self._file)]
            self._map, self._file, self._end = mapping, file, size
            self._start, self._position, self._ends = _HEADER, at, ends
            self._size = self._live_bytes()
        self._dirty.set()
        return dropped

    # -- durability and lifetime -----------------------------------------------------------------

    def _release(self, wait: bool = True) -> None:
        """Stop the syncer (``wait``: for it to finish an ``fsync`` under way) and unmap."""
        self._closing.set()
        self._dirty.set()
        if wait and self._syncer.is_alive() and self._syncer is not threading.current_thread():
            self._syncer.join(timeout=5.0)
        if _OPEN.get(self.path.resolve()) is self:
            del _OPEN[self.path.resolve()]
        with self._lock:
            for old_map, old_file in self._replaced:
                old_map.close()
                old_file.close()
            self._replaced = []
            if not self._map.closed:
                self._map.close()

    def close(self, remove_if_empty: bool = True) -> None:
        """Sync and close; an empty ring's file is removed, a ring with records stays to be replayed."""
        if self._file.closed:
            return
        empty = not self._ends
        self._release()
        with contextlib.suppress(OSError):
            os.fsync(self._file.fileno())
        self._file.close()
        if empty and remove_if_empty:
            self.path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Close and delete the file without syncing it (everything in it is done)."""
        if self._file.closed:
            return
        self._release(wait=False)  # called on the event loop: the syncer stops on its own
        self._file.close()
        self.path.unlink(missing_ok=True)


def drop_entries(record: bytes, unwanted: Callable[[msgspec.Raw], bool]) -> tuple[bytes, int, bool]:
    """A spool or journal record (``<batch id> [entries]``, no newline) without the entries
    ``unwanted`` picks: ``(record, how many dropped, whether none is left)``. An unreadable record
    comes back whole, nothing dropped."""
    batch_id, _, body = record.partition(b" ")
    try:
        entries = msgspec.json.decode(body, type=list[msgspec.Raw])
    except msgspec.DecodeError:
        return record, 0, False
    mine = [entry for entry in entries if not unwanted(entry)]
    if len(mine) == len(entries):
        return record, 0, not mine
    return batch_id + b" [" + b",".join(mine) + b"]", len(entries) - len(mine), not mine


def _open_locked(path: Path, create: bool = True) -> BinaryIO:
    """``path`` opened for reading and writing (created if missing when ``create``, never truncated
    here) and locked: one owner per file, so a live worker's ring is never read as an orphan (a new one is
    locked before it appears under its name, :mod:`~personalization.store.locked_files`)."""
    return open_locked(path, os.O_RDWR, "r+b", RingBusy, create)


def _journal_of(path: Path) -> str:
    """``journal-<name>-<n>.ring`` → ``journal-<name>`` (the journal its rings belong to)."""
    return path.name[: -len(RING_SUFFIX)].rsplit("-", 1)[0]


def convert_orphaned_rings(directory: Path) -> int:
    """Turn the rings of journals whose worker is gone into spool files; returns how many journals.

    A journal's rings (``journal-<name>-<n>.ring``, in the order numbered) become one spool file,
    ``journal-<name>.spool``: each record a spool line. It is written beside, ``fsync``-ed and renamed
    into place before the rings are deleted, so a crash part-way leaves the rings to convert again
    (a spool replayed twice writes nothing twice: batch markers). A journal with any ring still
    locked belongs to a live worker and is left alone.
    """
    directory = Path(directory)
    converted = 0
    paths = sorted(directory.glob(f"*{RING_SUFFIX}"), key=lambda p: (_journal_of(p), _number(p)))
    for journal, group in itertools.groupby(paths, key=_journal_of):
        rings: list[Ring] = []
        try:
            for path in group:
                rings.append(Ring(path, create=False))
        except OSError as exc:  # RingBusy: a live worker's journal; FileNotFoundError: converted meanwhile
            if not isinstance(exc, (RingBusy, FileNotFoundError)):
                log.warning("journal %s: could not open its rings (%s); left as they are", journal, exc)
            for ring in rings:
                ring.close(remove_if_empty=False)
            continue
        lines = [payload + b"\n" for ring in rings for payload in ring.payloads()]
        if lines:
            target = directory / f"{journal}.spool"
            temporary = directory / f".{journal}.spool.convert"
            with open(temporary, "wb") as handle:
                handle.writelines(lines)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
            converted += 1
        for ring in rings:
            ring.discard()
    return converted


def _number(path: Path) -> int:
    tail = path.name[: -len(RING_SUFFIX)].rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0

"""The exposure journal: a write-ahead log that makes an acknowledged decision survive ``SIGKILL``.

The exposure writer answers a request before its exposures reach Redis (a decision never waits for
its own log line), so between the response and the next batch write they exist only in the
process's memory. A process killed there — ``SIGKILL``, the OOM killer, a crashed container — would
lose exposures whose decisions the visitor already saw. So :meth:`ExposureWriter.submit` first
appends them here (one ``write`` to the operating system, no ``fsync``: it survives the process,
like Redis's ``appendfsync everysec``), and only then queues them.

Records are :class:`~personalization.store.spool.Spool` lines, ``<batch id> [entries]``, one per request,
labelled with the batch the writer will send them in. A batch's records are consecutive, and the
writer closes a batch (:meth:`Journal.seal`) before it sends it, so what the journal holds under a
batch id is exactly what that batch carries to Redis. On the next start a journal left by a killed
worker is replayed like a spool (:func:`~personalization.store.spool.orphaned_spools`): consecutive records
with one batch id are sent as that batch, and the batch marker the write script sets makes a batch
that had already reached Redis a no-op. Nothing acknowledged is lost; nothing is written twice.

The journal is split into **segments** (files of about ``segment_bytes``). The writer reports each
batch done (:meth:`Journal.done`: written, or moved to the spool) in order; a segment whose last
batch is done is deleted, and the live segment is emptied whenever everything in it is done, so the
journal holds only what is in the queue or on the wire — a few megabytes at most.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from pathlib import Path

from personalization.store.spool import Spool

__all__ = ["Journal", "JOURNAL_PREFIX"]

log = logging.getLogger("vary.journal")

#: File-name prefix of journal segments (in the spool directory, so orphans replay with spools).
JOURNAL_PREFIX = "journal-"


class Journal:
    """Segments ``<directory>/journal-<name>-<n>.spool``; see the module docstring."""

    def __init__(
        self, directory: Path, name: str, segment_bytes: int = 8 * 1024 * 1024, fsync_interval_s: float = 1.0
    ) -> None:
        self.directory = Path(directory)
        self.name = name
        self.segment_bytes = segment_bytes
        self._fsync_interval_s = fsync_interval_s
        self._numbers = itertools.count(1)
        self._current = self._open()
        #: Full segments waiting for their last batch to be done: (segment, that batch's id).
        self._retired: deque[tuple[Spool, str]] = deque()
        #: The batch the latest record belongs to (the live segment is empty once it is done).
        self._latest: str | None = None
        #: Records the operating system refused (disk full …): those exposures are only in memory.
        self.failed_appends = 0

    def _open(self) -> Spool:
        path = self.directory / f"{JOURNAL_PREFIX}{self.name}-{next(self._numbers):06d}.spool"
        return Spool(path, max_bytes=1 << 62, fsync_interval_s=self._fsync_interval_s, kind="journal")

    def append(self, batch_id: str, entries: list[bytes]) -> None:
        """Record one request's entries under the open batch ``batch_id`` (in the OS on return)."""
        try:
            self._current.append(batch_id, entries)
        except OSError as exc:  # a full disk must not fail the request; the queue still has them
            self.failed_appends += 1
            if self.failed_appends == 1 or self.failed_appends % 10_000 == 0:
                log.error("exposure journal %s: append failed (%s); %d so far", self._current.path, exc, self.failed_appends)
            return
        self._latest = batch_id

    def seal(self, batch_id: str) -> None:
        """``batch_id`` takes no more records; a segment past ``segment_bytes`` is retired here, so
        one batch's records never span two segments."""
        if self._current.size >= self.segment_bytes:
            self._retired.append((self._current, batch_id))
            self._current = self._open()

    def done(self, batch_id: str) -> None:
        """``batch_id`` is in Redis or in the spool (batches are reported in the order sealed)."""
        if self._retired and self._retired[0][1] == batch_id:
            self._retired.popleft()[0].discard()
        elif batch_id == self._latest and self._current.size:  # nothing recorded since: all of it is done
            self._current.empty()

    @property
    def size(self) -> int:
        """Bytes of records not yet known done, over every segment."""
        return self._current.size + sum(segment.size for segment, _ in self._retired)

    def close(self) -> None:
        """Close every segment; empty ones are removed, the rest replay on the next start."""
        for segment, _ in self._retired:
            segment.close()
        self._retired.clear()
        self._current.close()

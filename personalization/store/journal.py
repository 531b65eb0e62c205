"""The exposure journal: a write-ahead log that makes an acknowledged decision survive ``SIGKILL``.

The exposure writer answers a request before its exposures reach Redis (a decision never waits for
its own log line), so between the response and the next batch write they exist only in the
process's memory. A process killed there — ``SIGKILL``, the OOM killer, a crashed container — would
lose exposures whose decisions the visitor already saw. So :meth:`ExposureWriter.submit` first
records them here, and only then queues them.

Records are copied into a memory-mapped ring file (:mod:`personalization.store.ring`: no system call
per request; the pages are the file's and outlive the process; ``fsync`` at most once a second on a
background thread, like Redis's ``appendfsync everysec``). Each record is one request's entries as a
:class:`~personalization.store.spool.Spool` line, ``<batch id> [entries]``, labelled with the batch the
writer will send them in. A batch's records are consecutive, and the writer closes a batch
(:meth:`Journal.seal`) before it sends it, so what the journal holds under a batch id is exactly what
that batch carries to Redis. On the next start a journal left by a killed worker becomes a spool
file (:func:`~personalization.store.ring.convert_orphaned_rings`) replayed like any spool: consecutive
records with one batch id are sent as that batch, and the batch marker the write script sets makes a
batch that had already reached Redis a no-op. Nothing acknowledged is lost; nothing is written twice.

The writer reports each batch done (:meth:`Journal.done`: written, or moved to the spool) in the
order sealed, and the ring's start moves past its records, so the journal holds only what is in the
queue or on the wire — a few hundred kilobytes under load. A ring that fills up (Redis slow, the
queue long) is retired until its batches are done and the journal goes on in a new ring file.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from pathlib import Path

from personalization.store.ring import RING_SUFFIX, Ring

__all__ = ["JOURNAL_PREFIX", "Journal"]

log = logging.getLogger("vary.journal")

#: File-name prefix of journal rings (in the spool directory, so orphans replay with spools).
JOURNAL_PREFIX = "journal-"


class Journal:
    """Rings ``<directory>/journal-<name>-<n>.ring``; see the module docstring."""

    def __init__(
        self, directory: Path, name: str, ring_bytes: int = 8 * 1024 * 1024, fsync_interval_s: float = 1.0
    ) -> None:
        self.directory = Path(directory)
        self.name = name
        self.ring_bytes = ring_bytes
        self._fsync_interval_s = fsync_interval_s
        self._numbers = itertools.count(1)
        #: The ring records go to (``None`` while the file system refuses one: see :meth:`append`).
        self._current: Ring | None = None
        #: Full rings kept until every record in them is done.
        self._retired: deque[Ring] = deque()
        #: Sealed batches with records, oldest first: (batch id, a ring, how many records that ring
        #: will have been appended when the batch is done). A batch spanning a full ring and the next
        #: has an entry for each.
        self._marks: deque[tuple[str, Ring, int]] = deque()
        #: The batch the latest record belongs to.
        self._latest: str | None = None
        #: Records that could not be kept (the file system refused a new ring): only in memory.
        self.failed_appends = 0
        try:
            self._current = self._open(ring_bytes)
        except OSError as exc:  # a full disk must not stop the worker: appends try again
            log.error("exposure journal %s: no ring (%s)", name, exc)

    def _open(self, capacity: int) -> Ring:
        path = self.directory / f"{JOURNAL_PREFIX}{self.name}-{next(self._numbers):06d}{RING_SUFFIX}"
        return Ring(path, capacity=capacity, fsync_interval_s=self._fsync_interval_s)

    def append(self, batch_id: str, entries: list[bytes]) -> None:
        """Record one request's entries under the open batch ``batch_id`` (in the page cache on return)."""
        payload = b"%b [%b]" % (batch_id.encode(), b",".join(entries))
        current = self._current
        if current is None or not current.append(payload):
            try:
                current = self._rotate(batch_id, len(payload))
            except OSError as exc:  # a full disk must not fail the request; the queue still has them
                self.failed_appends += 1
                if self.failed_appends == 1 or self.failed_appends % 10_000 == 0:
                    log.error("exposure journal %s: no new ring (%s); %d records only in memory", self.name, exc, self.failed_appends)
                return
            current.append(payload)
        self._latest = batch_id

    def _rotate(self, batch_id: str, length: int) -> Ring:
        """The current ring is full: retire it until its records are done (those of the open batch
        ``batch_id`` are marked done with the batch) and go on in a new ring, large enough."""
        fresh = self._open(max(self.ring_bytes, 4 * length))
        full = self._current
        if full is not None:
            if self._latest == batch_id and full.pending:
                self._marks.append((batch_id, full, full.count))
            self._retired.append(full)
        self._current = fresh
        return fresh

    def seal(self, batch_id: str) -> None:
        """``batch_id`` takes no more records: what it holds in the ring is known from here."""
        if batch_id == self._latest and self._current is not None:
            self._marks.append((batch_id, self._current, self._current.count))

    def done(self, batch_id: str) -> None:
        """``batch_id`` is in Redis or in the spool (batches are reported in the order sealed)."""
        marks = self._marks
        if not any(mark[0] == batch_id for mark in marks):
            return  # nothing of it was recorded here
        while marks:
            mark, ring, count = marks.popleft()
            ring.advance(count)
            if mark == batch_id and not (marks and marks[0][0] == batch_id):
                break
        while self._retired and not self._retired[0].pending:
            self._retired.popleft().discard()

    @property
    def size(self) -> int:
        """Bytes of records not yet known done, over every ring."""
        current = self._current.size if self._current is not None else 0
        return current + sum(ring.size for ring in self._retired)

    def close(self) -> None:
        """Close every ring; empty ones are removed, the rest replay on the next start."""
        for ring in self._retired:
            ring.close()
        self._retired.clear()
        if self._current is not None:
            self._current.close()

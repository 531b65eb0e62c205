"""The journal's memory-mapped ring: records in order across wrap-arounds, the start kept in the file,
torn records left unread, full rings refused, orphans turned into spools, erasure rewrites.

Real files and real mappings throughout; the process kill itself is in ``test_journal.py``.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import struct
from pathlib import Path

import msgspec
import pytest

from personalization.store.journal import Journal
from personalization.store.ring import Ring, RingBusy, convert_orphaned_rings
from personalization.store.spool import Spool, replay_spool

HEADER = 4096


def _record(batch: str, i: int, width: int = 40) -> bytes:
    return b"%b [%b]" % (batch.encode(), msgspec.json.encode({"x": {"i": i, "pad": "p" * width}}))


def _live_bytes(ring: Ring) -> int:
    """What the size should be, from the payloads: each record and its 8-byte header (no wrap gap)."""
    return sum(len(p) + 8 for p in ring.payloads())


def test_records_come_back_in_order_across_many_wrap_arounds(tmp_path: Path) -> None:
    ring = Ring(tmp_path / "journal-a-000001.ring", capacity=1_000)
    live: list[bytes] = []
    done = 0
    for i in range(300):  # ~60-byte records in a 1 kB ring: it wraps every ~15 records
        record = _record("b", i)
        assert ring.append(record)
        live.append(record)
        if len(live) > 6:  # the oldest are done, as batches are written
            done += 3
            ring.advance(done)
            del live[:3]
        assert ring.payloads() == live
        assert ring.size >= _live_bytes(ring)  # plus the gap left at the end by a wrap
    path = ring.path
    ring.close()
    assert path.exists()  # records left: kept for the next start
    reopened = Ring(path)  # as a new worker opens a dead one's ring
    assert reopened.payloads() == live and reopened.pending == len(live)
    reopened.close(remove_if_empty=False)


def test_an_emptied_ring_starts_again_at_the_top(tmp_path: Path) -> None:
    ring = Ring(tmp_path / "journal-a-000001.ring", capacity=1_000)
    for i in range(5):
        ring.append(_record("b", i))
    ring.advance(5)
    assert ring.size == 0 and ring.payloads() == []
    with open(ring.path, "rb") as handle:  # the start in the header is the top again
        handle.seek(16)
        assert struct.unpack("<Q", handle.read(8))[0] == HEADER
    ring.append(_record("c", 0))
    assert ring.payloads() == [_record("c", 0)]
    ring.advance(6)
    ring.close()
    assert not ring.path.exists()  # nothing left: removed


def test_a_full_ring_refuses_and_keeps_what_it_has(tmp_path: Path) -> None:
    ring = Ring(tmp_path / "journal-a-000001.ring", capacity=500)
    kept = []
    while ring.append(record := _record("b", len(kept))):
        kept.append(record)
    assert 4 <= len(kept) < 10
    assert not ring.append(b"x" * 600)  # larger than the ring
    assert ring.payloads() == kept
    ring.advance(2)  # room at the top now: the next record wraps there
    assert ring.append(_record("c", 0))
    assert ring.payloads() == [*kept[2:], _record("c", 0)]
    ring.close()


def test_a_torn_record_and_everything_after_it_is_not_read(tmp_path: Path) -> None:
    """A machine crash persisted a record's header but not all of its body: its CRC no longer
    matches, and the reader stops there (those records were never ``fsync``-ed)."""
    path = tmp_path / "journal-a-000001.ring"
    ring = Ring(path)
    for i in range(3):
        ring.append(_record("b", i))
    ring.close(remove_if_empty=False)
    with open(path, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as mapping:
        second = HEADER + 8 + len(_record("b", 0))
        mapping[second + 8 + 5] ^= 0xFF  # a byte of the second record's body
    torn = Ring(path)
    assert torn.payloads() == [_record("b", 0)]
    torn.close(remove_if_empty=False)


def test_a_record_whose_length_was_never_written_is_not_there(tmp_path: Path) -> None:
    """Killed between copying a body and writing its length: the end marker stands where the
    record would start, so the body is invisible (and was never acknowledged)."""
    path = tmp_path / "journal-a-000001.ring"
    ring = Ring(path)
    ring.append(_record("b", 0))
    ring.close(remove_if_empty=False)
    with open(path, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as mapping:
        at = HEADER + 8 + len(_record("b", 0))
        body = _record("b", 1)
        mapping[at + 8 : at + 8 + len(body)] = body  # the body, as append copies it first
    reopened = Ring(path)
    assert reopened.payloads() == [_record("b", 0)]
    reopened.close(remove_if_empty=False)


def test_a_live_ring_is_locked_and_not_converted(tmp_path: Path) -> None:
    ring = Ring(tmp_path / "journal-live-000001.ring")
    ring.append(_record("b", 0))
    with pytest.raises(RingBusy):
        Ring(ring.path)
    assert convert_orphaned_rings(tmp_path) == 0
    assert ring.path.exists() and not list(tmp_path.glob("*.spool"))
    ring.close()


def test_a_batch_across_two_rings_replays_as_one_batch(tmp_path: Path) -> None:
    """A journal whose ring filled up mid-batch goes on in a new ring; the dead worker's rings
    become one spool where the batch's records are consecutive, so the replay writes it in one call
    (the batch marker of a second call with the same id would skip the rest)."""
    journal = Journal(tmp_path, "dead", ring_bytes=600)
    for i in range(12):
        journal.append("batch-1" if i < 10 else "batch-2", [msgspec.json.encode({"x": {"i": i, "p": "q" * 30}})])
    rings = sorted(tmp_path.glob("journal-dead-*.ring"))
    assert len(rings) >= 2
    # The worker is killed: its rings' locks go with it (here: their files are closed unsynced).
    for ring in [*journal._retired, journal._current]:
        assert ring is not None
        ring._release()
        ring._file.close()
    assert convert_orphaned_rings(tmp_path) == 1
    assert not list(tmp_path.glob("*.ring"))
    spool = Spool(tmp_path / "journal-dead.spool")
    written: list[tuple[str, list[int]]] = []

    async def write(batch_id: str, entries: list[msgspec.Raw]) -> int:
        written.append((batch_id, [msgspec.json.decode(e)["x"]["i"] for e in entries]))
        return len(entries)

    assert asyncio.run(replay_spool(spool, write)) == 12
    assert written == [("batch-1", list(range(10))), ("batch-2", [10, 11])]
    spool.close()


def test_done_batches_free_the_rings_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "w", ring_bytes=600)
    for batch in range(6):
        for i in range(4):
            journal.append(f"b{batch}", [msgspec.json.encode({"i": i, "p": "q" * 30})])
        journal.seal(f"b{batch}")
    assert len(list(tmp_path.glob("*.ring"))) > 1 and journal.size > 0
    for batch in range(5):
        journal.done(f"b{batch}")
    assert journal._current is not None
    assert [p.split(b" ")[0] for p in journal._current.payloads()] == [b"b5"] * 4
    assert len(list(tmp_path.glob("*.ring"))) == 1  # the full rings went with their last batch
    journal.done("not-recorded")  # a batch with nothing in the journal: nothing moves
    journal.done("b5")
    assert journal.size == 0
    journal.close()
    assert not list(tmp_path.glob("*.ring"))


def test_drop_rewrites_a_live_ring_and_appends_and_advances_go_on(tmp_path: Path) -> None:
    ring = Ring(tmp_path / "journal-a-000001.ring", capacity=2_000)
    ring.append(b'b1 [{"v":"gone"},{"v":"kept"}]')
    ring.append(b'b1 [{"v":"gone"}]')
    ring.append(b'b2 [{"v":"kept"}]')
    inode = os.stat(ring.path).st_ino
    assert ring.drop(lambda raw: msgspec.json.decode(raw)["v"] == "gone") == 2
    assert os.stat(ring.path).st_ino != inode  # renamed into place whole
    # The emptied record stays (empty) so record counts still mean the same records.
    assert ring.payloads() == [b'b1 [{"v":"kept"}]', b"b1 []", b'b2 [{"v":"kept"}]']
    with pytest.raises(RingBusy):  # the new file is locked as the old one was
        Ring(ring.path)
    ring.advance(2)
    ring.append(b'b3 [{"v":"new"}]')
    assert ring.payloads() == [b'b2 [{"v":"kept"}]', b'b3 [{"v":"new"}]']
    assert ring.drop(lambda raw: False) == 0
    ring.close()
    assert ring.drop(lambda raw: True) == 0  # an erase reaching a ring closed meanwhile: nothing to do


def test_an_orphan_left_by_a_crashed_conversion_is_converted_again(tmp_path: Path) -> None:
    ring = Ring(tmp_path / "journal-x-000001.ring")
    ring.append(b'b1 [{"v":1}]')
    ring.close(remove_if_empty=False)
    (tmp_path / ".journal-x.spool.convert").write_bytes(b"half")  # a conversion cut short
    assert convert_orphaned_rings(tmp_path) == 1
    assert (tmp_path / "journal-x.spool").read_bytes() == b'b1 [{"v":1}]\n'
    assert not (tmp_path / ".journal-x.spool.convert").exists()


def test_a_system_without_posix_fallocate_still_gets_a_ring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS has no ``os.posix_fallocate``: the file is sized and its pages come on first use."""
    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    ring = Ring(tmp_path / "journal-a-000001.ring", capacity=1_000)
    assert ring.append(_record("b", 0)) and ring.payloads() == [_record("b", 0)]
    assert os.path.getsize(ring.path) == HEADER + 1_000
    ring.advance(1)
    ring.close()

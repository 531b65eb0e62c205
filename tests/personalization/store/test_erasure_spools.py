"""Erasing a visitor from the local spool and journal files (#17.4): nothing of theirs is replayed.

Before, ``DELETE /v1/visitors/{id}`` only touched Redis: a spooled exposure or event, or a killed
worker's journal, was replayed into Redis after the erase and brought the visitor back.
"""

from __future__ import annotations

import asyncio
import fcntl
from pathlib import Path

import msgspec

from personalization.measurement.events import EVENT_ENCODER, Conversion
from personalization.store.journal import Journal
from personalization.store.ring import convert_orphaned_rings
from personalization.store.spool import Spool, replay_spool
from personalization.store.spool_erasure import erase_from_spools
from personalization.store.tombstones import ERASED_FILE, entry_visitor
from personalization.types import EXPOSURE_ENCODER, Exposure

GONE, KEPT = "forget-me-spool", "keep-me-spool"


def _exposure(visitor: str, i: int, ts: float = 1_780_000_000.0) -> bytes:
    exposure = Exposure(
        id=f"x-{visitor}-{i}", ts=ts + i, visitor_id=visitor, session_id=None, channel="web", entry_id="hero",
        variant_entry_id="hero", experience="exp", variant=1, is_control=False, holdout=False, propensity=0.5,
    )
    return b'{"x":' + EXPOSURE_ENCODER.encode(exposure) + b"}"


def _assignment(visitor: str) -> bytes:
    return b'{"a":' + msgspec.json.encode([visitor, "exp", 1]) + b"}"


def _event(visitor: str, i: int, ts: float = 1_780_000_000.0) -> bytes:
    return EVENT_ENCODER.encode(Conversion(visitor_id=visitor, goal="signup", event_id=f"e-{visitor}-{i}", ts=ts + i))


def _visitors(spool_path: Path) -> list[str | None]:
    spool = Spool(spool_path)
    try:
        return [entry_visitor(bytes(e)) for batch in spool.batches() for e in batch.entries]
    finally:
        spool.close(remove_if_empty=False)


def test_entries_are_told_apart_by_visitor() -> None:
    assert entry_visitor(_exposure(GONE, 1)) == GONE
    assert entry_visitor(_assignment(GONE)) == GONE
    assert entry_visitor(_event(GONE, 1)) == GONE
    assert entry_visitor(b'{"x":{"visitor_id":null}}') is None and entry_visitor(b"not json") is None


def test_drop_rewrites_a_live_spool_and_a_running_replay_starts_over(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "exposures-1.spool")
    spool.append("b1", [_exposure(GONE, 1), _exposure(KEPT, 1)])
    spool.append("b2", [_exposure(GONE, 2)])
    spool.append("b3", [_exposure(KEPT, 2), _assignment(GONE)])
    written: list[tuple[str, list[str | None]]] = []

    async def write(batch_id: str, entries: list[msgspec.Raw]) -> int:
        if batch_id == "b1" and spool.generation == 0:  # an erase lands while the replay awaits Redis
            assert spool.drop(lambda raw: entry_visitor(bytes(raw)) == GONE) == 3
        written.append((batch_id, [entry_visitor(bytes(e)) for e in entries]))
        return len(entries)

    asyncio.run(replay_spool(spool, write))
    # The replay noticed the rewrite and went over the new file from the top: b1 again (harmless,
    # batch markers make it a no-op), without the erased visitor, and b2 (only theirs) gone.
    assert written == [("b1", [GONE, KEPT]), ("b1", [KEPT]), ("b3", [KEPT])]
    assert spool.size == 0
    spool.append("b4", [_exposure(KEPT, 3)])  # the rewritten file is still the spool's, and locked
    assert [b.batch_id for b in spool.batches()] == ["b4"]
    spool.close()


def test_erase_reaches_own_orphaned_and_journal_files_and_tombstones_another_workers(tmp_path: Path) -> None:
    spool_dir, events_dir = tmp_path / "spool", tmp_path / "spool" / "events"
    own = Spool(spool_dir / "exposures-own.spool")
    own.append("b1", [_exposure(GONE, 1), _exposure(KEPT, 1)])
    journal = Journal(spool_dir, "own")
    journal.append("j1", [_exposure(GONE, 3), _assignment(GONE), _exposure(KEPT, 3)])
    orphan = Spool(events_dir / "events-dead.spool", kind="events")  # a killed worker's: left on disk
    orphan.append("e1", [_event(GONE, 1), _event(KEPT, 1)])
    orphan.close(remove_if_empty=False)
    busy_path = spool_dir / "exposures-other.spool"  # another live worker's: its lock is held
    busy = Spool(busy_path)
    busy.append("o1", [_exposure(GONE, 4), _exposure(KEPT, 4)])
    busy.close(remove_if_empty=False)
    holder = open(busy_path, "ab")  # noqa: SIM115 - stands for the other process holding its spool
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    result = erase_from_spools([spool_dir, events_dir], GONE, now=1_780_000_100.0)
    assert (result.entries, result.files, result.busy) == (4, 3, 1)
    assert [entry_visitor(bytes(e)) for b in own.batches() for e in b.entries] == [KEPT]
    own.close()
    assert journal._current is not None
    assert [entry_visitor(e) for p in journal._current.payloads() for e in msgspec.json.decode(p.partition(b" ")[2], type=list[msgspec.Raw])] == [KEPT]
    journal.close()  # records left: the ring stays, and the next start reads what the erase kept
    assert [v for path in sorted(spool_dir.glob("journal-own*.spool")) for v in _visitors(path)] == []
    convert_orphaned_rings(spool_dir)
    assert [v for path in sorted(spool_dir.glob("journal-own*.spool")) for v in _visitors(path)] == [KEPT]
    assert _visitors(events_dir / "events-dead.spool") == [KEPT]
    assert (spool_dir / ERASED_FILE).exists() and not (events_dir / ERASED_FILE).exists()
    assert GONE not in (spool_dir / ERASED_FILE).read_text()  # a digest, not the id

    # The other worker replays later: the tombstone drops the erased visitor's entries recorded
    # before the erase; an exposure of theirs recorded after it (they came back) is kept.
    holder.close()
    other = Spool(busy_path)
    other.append("o2", [_exposure(GONE, 200)])
    replayed: list[str | None] = []

    async def write(batch_id: str, entries: list[msgspec.Raw]) -> int:
        replayed.extend(entry_visitor(bytes(e)) for e in entries)
        return len(entries)

    asyncio.run(replay_spool(other, write))
    assert replayed == [KEPT, GONE]
    other.close()

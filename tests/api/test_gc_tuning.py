"""gc.freeze after loading and after each swap (api/gc_tuning.py): the collector stays on, a swap refreezes,
and a replaced object's reference cycles are still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from api.gc_tuning import THRESHOLDS, FreezeWatcher, freeze


class _Snapshot:
    """Stands for a compiled snapshot: long-lived, with a reference cycle inside."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def gc_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.enable()


def test_a_swap_refreezes_and_the_replaced_snapshot_is_freed(gc_restored: None) -> None:
    served = [_Snapshot()]
    watcher = FreezeWatcher(lambda: (served[0],))
    assert watcher.check() is True and gc.get_freeze_count() > 0
    assert watcher.check() is False  # nothing swapped: no collection, no refreeze
    old = weakref.ref(served[0])
    served[0] = _Snapshot()  # the swap; the old one is now only a cycle inside the frozen set
    assert old() is not None
    assert watcher.check() is True and watcher.freezes == 2
    assert old() is None  # unfrozen and collected before refreezing, not kept frozen forever


def test_freeze_keeps_the_collector_on(gc_restored: None) -> None:
    freeze()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_the_app_freezes_its_heap_and_tunes_thresholds(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert gc.isenabled()
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() > 0

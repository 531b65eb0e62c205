"""The background ``fsync`` the spool and the journal ring share: the "everysec" durability policy.

A spool append or a journal record reaches the operating system at once (it survives the process
being killed); reaching the disk, which a machine crash needs, waits for this thread: at most one
``fsync`` per interval while something was written, never on the event loop, where a busy disk
would stall every request in flight (like Redis's ``appendfsync everysec``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["start_fsync_thread"]


def start_fsync_thread(
    fileno: Callable[[], int], dirty: threading.Event, closing: threading.Event, interval_s: float, name: str
) -> threading.Thread:
    """A daemon thread that waits for ``dirty``, clears it, ``fsync``-s ``fileno()`` and then rests
    ``interval_s``, until ``closing`` is set or the file is closed (its owner syncs it then)."""

    def run() -> None:
        while True:
            dirty.wait()
            if closing.is_set():
                return
            dirty.clear()
            try:
                os.fsync(fileno())
            except (OSError, ValueError):  # closed meanwhile: the owner's close() syncs itself
                return
            if closing.wait(interval_s):
                return

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread

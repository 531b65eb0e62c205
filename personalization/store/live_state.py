"""Following the shared serving state: every worker refreshes pauses and phases in the background.

Why a background refresh and not a read per request: guardrail pauses and phases change rarely (a
guardrail fires, a marketer resumes, a set-up edit lands), while decisions run thousands of times a
second. Every ``VARY_STATE_REFRESH_S`` (2 s) each worker reads the pauses with one ``HGETALL``, and,
when the served snapshot changed, records its experiences' phases (:func:`record_phases`). The
result is one immutable :class:`~personalization.decision.live_state.LiveState`, handed on only when
it differs from the last — the request path never waits for Redis for it. A pause or a resume reaches
every worker within one refresh interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from redis.asyncio import Redis

from personalization.decision.live_state import LiveState
from personalization.store.pauses import load_pauses
from personalization.store.phases import record_phases
from personalization.types import Experience

__all__ = ["LiveStateFollower", "ServedContent"]

log = logging.getLogger("vary.live")

#: The served content as the follower needs it: its version and its experiences (``None``: none yet).
ServedContent = Callable[[], tuple[str, Iterable[Experience]] | None]


class LiveStateFollower:
    """Refreshes the :class:`LiveState` of one worker and hands each new one to ``apply``."""

    def __init__(
        self,
        redis: Redis,
        served: ServedContent,
        apply: Callable[[LiveState], None],
        *,
        global_holdout: float = 0.0,
        every_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._served = served
        self._apply = apply
        self._global_holdout = global_holdout
        self._every_s = every_s
        self._clock = clock
        #: The content version whose phases are recorded, and those phases.
        self._phases_of: str | None = None
        self._phases: dict[str, int] = {}
        self.state = LiveState(global_holdout=global_holdout)
        self.failures = 0

    async def refresh(self) -> LiveState:
        """One refresh (phases only when the served content changed, pauses always)."""
        served = self._served()
        if served is not None and served[0] != self._phases_of:
            version, experiences = served
            self._phases = await record_phases(self._redis, experiences, self._clock())
            self._phases_of = version
        paused = await load_pauses(self._redis, self._phases)
        state = LiveState(
            paused=paused,
            phases={key: phase for key, phase in self._phases.items() if phase > 1},
            global_holdout=self._global_holdout,
        )
        if state != self.state:
            self.state = state
            self._apply(state)
        return state

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Refresh until ``stop``; Redis errors are logged once per outage and retried next interval."""
        while not stop.is_set():
            try:
                await self.refresh()
                if self.failures:
                    log.info("serving state refreshed again after %d failed refreshes", self.failures)
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down or slow: the last state keeps serving
                self.failures += 1
                if self.failures == 1:
                    log.warning("serving state (pauses, phases) not refreshed (%s); the last one serves", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._every_s)

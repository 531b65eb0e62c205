"""The guardrail loop: every few seconds, test each running experience's guardrails and pause what harms.

It runs where aggregation runs (the in-process aggregator of ``vary serve``, and ``vary aggregate``),
because that is where the counts it reads are fresh. One check, per running experience with
guardrails in the current content:

1. read the aggregates of its *current phase* (:func:`~personalization.store.phases.current_phases`,
   :func:`~personalization.types.phase_key`: data from before a set-up change says nothing about the
   variant now served) — the ``all`` hash and the ``ux:<touchpoint>`` hashes, two pipelined round trips;
2. :func:`~personalization.measurement.guardrails.evaluate_guardrails` (pure);
3. for each harmed (variant, metric) not resumed by a person in this phase
   (:func:`~personalization.store.pauses.resumed`), :func:`~personalization.store.pauses.pause_variant`.
   Several processes may see the same harm; only the call that paused it emits the sink notice
   (:func:`~personalization.sinks.guardrail_events.notify_guardrail_paused`).

Serving picks the pause up on its next state refresh and gives the paused variant's visitors the
baseline (the exposure still logged under the assigned variant: intent to treat).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from msgspec import Struct
from redis.asyncio import Redis

from personalization.measurement.guardrails import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_SAMPLE,
    GuardrailVerdict,
    evaluate_guardrails,
)
from personalization.measurement.results_counts import Counts, text
from personalization.sinks.guardrail_events import notify_guardrail_paused
from personalization.store.keys import agg_key
from personalization.store.pauses import load_pause_records, pause_variant, resumed
from personalization.store.phases import current_phases
from personalization.types import Experience, phase_key

__all__ = ["GuardrailMonitor", "GuardrailPause", "live_pauses", "pause_reason", "read_guardrail_counts"]

log = logging.getLogger("vary.guardrails")

#: Touchpoint hashes read per experience at most (task success and abandonment sum over them).
MAX_TOUCHPOINTS = 200



def pause_reason(verdict: GuardrailVerdict) -> str:
    """What a paused variant's visitors are told, and what the sinks and the dashboard show:
    ``paused: guardrail csat harmed (csat −12.0 pts [−18.1, −5.9], 412 vs 398 answers)``."""
    return f"paused: guardrail {verdict.metric} harmed ({verdict.reason})"

class GuardrailPause(Struct, frozen=True, kw_only=True):
    """A pause this monitor made (and told the sinks about)."""

    experience: str
    variant: int
    metric: str
    reason: str
    phase: int


async def read_guardrail_counts(redis: Redis, name: str) -> tuple[Counts, list[Counts]]:
    """The ``all`` hash and the ``ux:<touchpoint>`` hashes of aggregate name ``name`` (a phase key)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(agg_key(name, "all"))
    pipe.smembers(agg_key(name, "tps"))
    all_raw, tps_raw = await pipe.execute()
    tps = sorted(text(t) for t in tps_raw)[:MAX_TOUCHPOINTS]
    if not tps:
        return Counts(all_raw), []
    pipe = redis.pipeline(transaction=False)
    for tp in tps:
        pipe.hgetall(agg_key(name, f"ux:{tp}"))
    return Counts(all_raw), [Counts(raw) for raw in await pipe.execute()]


async def live_pauses(redis: Redis, experiences: Iterable[str]) -> dict[str, dict[int, str]]:
    """Experience → variant → reason of the pauses made in each experience's current phase (a pause of
    an earlier phase no longer applies: the set-up changed since)."""
    records = await load_pause_records(redis)
    keys = [key for key in experiences if key in records]
    phases = await current_phases(redis, keys)
    live: dict[str, dict[int, str]] = {}
    for key in keys:
        reasons = {v: r.reason for v, r in records[key].items() if r.phase == phases.get(key, 1)}
        if reasons:
            live[key] = reasons
    return live


class GuardrailMonitor:
    """Checks ``experiences()`` (the current content's experiences, live phase laid over) every
    ``every_s`` seconds; ``alpha`` and ``min_sample`` as in
    :func:`~personalization.measurement.guardrails.evaluate_guardrails`."""

    def __init__(
        self,
        redis: Redis,
        experiences: Callable[[], Iterable[Experience]],
        *,
        every_s: float = 10.0,
        alpha: float = DEFAULT_ALPHA,
        min_sample: int = DEFAULT_MIN_SAMPLE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if every_s <= 0:
            raise ValueError(f"every_s must be > 0, got {every_s}")
        self._redis = redis
        self._experiences = experiences
        self.every_s = every_s
        self.alpha = alpha
        self.min_sample = min_sample
        self._clock = clock
        #: Pauses this monitor made since it started.
        self.paused: list[GuardrailPause] = []

    async def check_experience(self, experience: Experience, phase: int, now: float) -> list[GuardrailPause]:
        """Test one experience's guardrails in ``phase`` (its current one); pause what harms. Returns
        the pauses this call made."""
        counts, ux = await read_guardrail_counts(self._redis, phase_key(experience.key, phase))
        verdicts = evaluate_guardrails(experience, counts, ux, alpha=self.alpha, min_sample=self.min_sample)
        harmed = [v for v in verdicts if v.harmed and v.variant not in experience.paused]
        if not harmed:
            return []
        lifted = await resumed(self._redis, experience.key, phase)
        made: list[GuardrailPause] = []
        for v in harmed:
            if (v.variant, v.metric) in lifted:
                continue
            if await self._pause(experience.key, phase, v, now):
                made.append(GuardrailPause(experience=experience.key, variant=v.variant, metric=v.metric,
                                           reason=pause_reason(v), phase=phase))
        return made

    async def _pause(self, experience: str, phase: int, v: GuardrailVerdict, now: float) -> bool:
        reason = pause_reason(v)
        if not await pause_variant(self._redis, experience, v.variant, reason, v.metric, phase, now):
            return False  # already paused (by another process, or by another metric of this check)
        log.warning("guardrail: paused %s variant %d in phase %d: %s", experience, v.variant, phase, reason)
        await notify_guardrail_paused(self._redis, experience=experience, variant=v.variant, metric=v.metric,
                                      reason=reason, phase=phase, now=now)
        return True

    async def check_once(self) -> list[GuardrailPause]:
        """One check of every running experience with guardrails; returns the pauses made."""
        now = self._clock()
        made: list[GuardrailPause] = []
        checked = [x for x in self._experiences() if x.guardrails and x.variants and x.is_running(now)]
        if not checked:
            return made
        phases = await current_phases(self._redis, [x.key for x in checked])
        for experience in checked:
            made += await self.check_experience(experience, phases.get(experience.key, experience.phase), now)
        self.paused += made
        return made

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Checks until ``stop`` is set; a failed check (Redis down) is logged and tried again."""
        while not stop.is_set():
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("guardrail check failed; trying again in %g s", self.every_s)
            try:
                await asyncio.wait_for(stop.wait(), self.every_s)
            except TimeoutError:
                pass

"""The launch gate: a bandit policy goes live only when the logs say it beats the policy that logged them.

Why a gate and not a dashboard number: activating a policy is one call, and a policy whose reward
model looks fine on held-out log loss can still serve worse than what runs now (it learned the
logging policy's bias, or an interaction that is noise). Off-policy evaluation on the experience's
own logged exposures answers the question that matters — what would it have earned here — so the
answer is computed for every candidate, stored beside its card, and read by ``PUT
/v1/models/active``:

* **When.** As soon as a policy is registered over HTTP, in the background (:class:`GateRunner`);
  ``PUT /v1/models/active`` starts it for a policy registered another way (the CLI) and waits up to
  :data:`SYNC_WAIT_S` for it, so a small log is judged at once.
* **On what, bounded.** The experience's logged decisions of the last :data:`GATE_LOOKBACK_S`
  (one row per visitor, reward = a goal within 7 days: :func:`~personalization.models.logged.logged_decisions`),
  at most the newest :data:`GATE_MAX_ROWS`, within :data:`GATE_TIMEOUT_S` (else the verdict is an
  ``error`` saying so).
* **How.** Doubly robust (:mod:`personalization.models.ope`, the candidate's probabilities computed
  as serving computes them) with a percentile bootstrap of :data:`GATE_BOOTSTRAP` resamples drawn
  from seed :data:`GATE_SEED`, so the same logs always give the same verdict.
* **The rule.** ``pass`` when the 2.5th percentile of the candidate's DR bootstrap is at least the
  logging policy's value on the same rows (their mean reward); ``fail`` otherwise; ``error`` when it
  cannot be evaluated (no logged traffic, the experience is not in the content, another number of
  variants). Only ``pass`` activates without ``"force": true``; a forced activation is recorded
  (:class:`ForcedLaunch`: which admin key, when, over which verdict).

Stored as the hash ``vary:models:gate:<version>`` (:data:`~personalization.store.keys.MODELS_GATE_PREFIX`),
fields ``verdict`` and ``forced``, so the background writer and a forcing admin never overwrite each
other. The card itself stays immutable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
import msgspec
import numpy as np
from msgspec import Meta
from redis.asyncio import Redis

from personalization.models.evaluation import EvaluationError, evaluate_logged
from personalization.models.files import ModelLoadError
from personalization.models.logged import logged_decisions
from personalization.models.ope import Estimate, LoggedBandit, OffPolicyEstimate
from personalization.models.policy import PolicyCard
from personalization.models.registry import ModelRegistry, UnknownModelVersion
from personalization.store.keys import MODELS_GATE_PREFIX
from personalization.types import Experience

__all__ = [
    "GATE_BOOTSTRAP",
    "GATE_LOOKBACK_S",
    "GATE_MAX_ROWS",
    "GATE_SEED",
    "GATE_TIMEOUT_S",
    "SYNC_WAIT_S",
    "ForcedLaunch",
    "GateRunner",
    "GateVerdict",
    "LaunchGate",
    "evaluate_gate",
    "judge",
    "load_gate",
    "load_gates",
    "record_force",
]

log = logging.getLogger("vary.models.gate")

GATE_MAX_ROWS = 20_000
GATE_LOOKBACK_S = 28 * 86_400.0
GATE_TIMEOUT_S = 120.0
GATE_BOOTSTRAP = 500
GATE_SEED = 0
#: How long ``PUT /v1/models/active`` waits for a verdict it had to start before answering "pending".
SYNC_WAIT_S = 10.0
#: A ``pending`` verdict older than this was left by a worker that stopped: it is started again.
STALE_PENDING_S = 2 * GATE_TIMEOUT_S

GateStatus = Literal["pending", "pass", "fail", "error"]


class GateVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """The launch gate's verdict on one policy version (see the module docstring)."""

    version: Annotated[str, Meta(description="The policy version judged.")]
    experience: Annotated[str, Meta(description="The bandit experience the policy is for.")] | None
    status: Annotated[GateStatus, Meta(description="`pending` (running), `pass`, `fail` or `error`.")]
    detail: Annotated[str, Meta(description="One sentence saying why, with the numbers.")]
    started_at: Annotated[float, Meta(description="When the judgement started, Unix seconds.")]
    finished_at: Annotated[float, Meta(description="When it finished, Unix seconds; null while running.")] | None = None
    dr: (
        Annotated[Estimate, Meta(description="The candidate's doubly-robust estimate and its 95% bootstrap interval.")]
        | None
    ) = None
    logged: (
        Annotated[
            Estimate, Meta(description="The logging policy's value (mean reward) on the same rows, with its interval.")
        ]
        | None
    ) = None
    lower_bound: (
        Annotated[float, Meta(description="`dr.interval[0]`: what must reach `logged.value` to pass.")] | None
    ) = None
    n: Annotated[int, Meta(description="Logged rows the estimate was computed on.")] = 0
    ess: (
        Annotated[float, Meta(description="Effective sample size of the importance weights; null before the estimate.")]
        | None
    ) = None
    n_bootstrap: Annotated[int, Meta(description="Bootstrap resamples behind the interval.")] = GATE_BOOTSTRAP
    seed: Annotated[int, Meta(description="Random seed of the bootstrap (results are reproducible).")] = GATE_SEED
    max_rows: Annotated[int, Meta(description="The most logged rows read.")] = GATE_MAX_ROWS
    warnings: Annotated[
        tuple[str, ...], Meta(description="Caveats of the estimate (few rows, extreme weights), in words.")
    ] = ()


class ForcedLaunch(msgspec.Struct, frozen=True, kw_only=True):
    """An activation that overrode the gate: who (a fingerprint of the admin key), when, over what."""

    by: Annotated[str, Meta(description="Fingerprint of the admin key that forced the activation.")]
    at: Annotated[float, Meta(description="When, Unix seconds.")]
    status: Annotated[
        str, Meta(description="The verdict's status when it was forced (`none`: no verdict had been started).")
    ]


class LaunchGate(msgspec.Struct, frozen=True, kw_only=True):
    """Everything stored about one version's launch: its verdict and any forced activation."""

    version: Annotated[str, Meta(description="The policy version.")]
    verdict: Annotated[GateVerdict, Meta(description="The gate's verdict; null when none was started.")] | None = None
    forced: Annotated[ForcedLaunch, Meta(description="The activation that overrode the gate, if any.")] | None = None


def judge(
    version: str, experience: str, estimate: OffPolicyEstimate, started_at: float, finished_at: float, max_rows: int
) -> GateVerdict:
    """``pass`` when the DR lower bound reaches the logging policy's value, else ``fail``."""
    lower = estimate.dr.interval[0]
    logged = estimate.logged.value
    passed = bool(np.isfinite(lower)) and lower >= logged
    relation = "≥" if passed else "<"
    detail = (
        f"doubly-robust estimate {estimate.dr.value:.4f}, 95% interval [{lower:.4f}, "
        f"{estimate.dr.interval[1]:.4f}] on {estimate.n} logged decisions: its lower bound {lower:.4f} "
        f"{relation} the logging policy's value {logged:.4f}"
    )
    return GateVerdict(
        version=version,
        experience=experience,
        status="pass" if passed else "fail",
        detail=detail,
        started_at=started_at,
        finished_at=finished_at,
        dr=estimate.dr,
        logged=estimate.logged,
        lower_bound=lower,
        n=estimate.n,
        ess=estimate.ess,
        max_rows=max_rows,
        warnings=estimate.warnings,
    )


def _newest(bandit: LoggedBandit, max_rows: int) -> LoggedBandit:
    """The newest ``max_rows`` rows (they come in exposure-time order)."""
    if len(bandit.contexts) <= max_rows:
        return bandit
    return LoggedBandit(
        contexts=bandit.contexts[-max_rows:],
        actions=bandit.actions[-max_rows:],
        propensities=bandit.propensities[-max_rows:],
        rewards=bandit.rewards[-max_rows:],
        n_actions=bandit.n_actions,
    )


async def _store(redis: Redis, verdict: GateVerdict) -> None:
    await redis.hset(MODELS_GATE_PREFIX + verdict.version, "verdict", msgspec.json.encode(verdict))


async def load_gate(redis: Redis, version: str) -> LaunchGate:
    """What is stored about ``version``'s launch (nothing yet: both ``None``)."""
    raw = await redis.hgetall(MODELS_GATE_PREFIX + version)
    fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
    verdict = msgspec.json.decode(fields["verdict"], type=GateVerdict) if "verdict" in fields else None
    forced = msgspec.json.decode(fields["forced"], type=ForcedLaunch) if "forced" in fields else None
    return LaunchGate(version=version, verdict=verdict, forced=forced)


async def load_gates(redis: Redis, versions: Iterable[str]) -> dict[str, LaunchGate]:
    return {version: await load_gate(redis, version) for version in versions}


async def record_force(redis: Redis, version: str, by: str, status: str, now: float) -> ForcedLaunch:
    forced = ForcedLaunch(by=by, at=now, status=status)
    await redis.hset(MODELS_GATE_PREFIX + version, "forced", msgspec.json.encode(forced))
    return forced


async def evaluate_gate(
    redis: Redis,
    registry: ModelRegistry,
    version: str,
    experiences: Mapping[str, Experience],
    *,
    partitions: int = 1,
    max_rows: int = GATE_MAX_ROWS,
    timeout_s: float = GATE_TIMEOUT_S,
    n_bootstrap: int = GATE_BOOTSTRAP,
    clock: Callable[[], float] = time.time,
) -> GateVerdict | None:
    """Judge policy ``version`` on its experience's logs and store the verdict (``None``: a segment
    model, which chooses no variants and has no gate). A ``pending`` verdict is stored first."""
    card = (await registry.get(version)).card
    if not isinstance(card, PolicyCard):
        return None
    started = clock()
    key = card.experience or ""

    def error(detail: str) -> GateVerdict:
        return GateVerdict(
            version=version, experience=key, status="error", detail=detail, started_at=started,
            finished_at=clock(), n_bootstrap=n_bootstrap, max_rows=max_rows,
        )

    await _store(redis, GateVerdict(
        version=version, experience=key, status="pending", started_at=started,
        detail=f"evaluating on the newest ≤ {max_rows:,} logged decisions of {key!r}",
        n_bootstrap=n_bootstrap, max_rows=max_rows,
    ))
    experience = experiences.get(key)
    if experience is None:
        verdict = error(f"experience {key!r} is not in the served content: nothing to judge the policy on")
    else:
        try:
            with anyio.fail_after(timeout_s):  # anyio's scope: the worker threads below honour it
                policy = await registry.load(version)
                decisions = await logged_decisions(
                    redis, experience, since_ts=started - GATE_LOOKBACK_S, partitions=partitions
                )
                logged = _newest(decisions.bandit, max_rows)
                if len(logged.contexts) == 0:
                    raise EvaluationError(
                        f"no logged exposures of {key!r} with a visitor id in the last "
                        f"{GATE_LOOKBACK_S / 86_400:g} days: nothing to judge the policy on yet"
                    )
                estimate, _ = await anyio.to_thread.run_sync(  # at the deadline the thread is left to finish
                    lambda: evaluate_logged(policy, logged, experience, n_bootstrap=n_bootstrap),  # type: ignore[arg-type]
                    abandon_on_cancel=True,
                )
            verdict = judge(version, key, estimate, started, clock(), max_rows)
            verdict = msgspec.structs.replace(verdict, n_bootstrap=n_bootstrap)
        except TimeoutError:
            verdict = error(f"the evaluation took longer than {timeout_s:g} s; judge it again on fewer rows")
        except (EvaluationError, ModelLoadError, UnknownModelVersion) as exc:
            verdict = error(str(exc))
    await _store(redis, verdict)
    log.info("launch gate of %s: %s (%s)", version, verdict.status, verdict.detail)
    return verdict


class GateRunner:
    """One worker's background gate evaluations, one task per version at a time."""

    def __init__(self, start: Callable[[str], Coroutine[Any, Any, GateVerdict | None]]) -> None:
        #: ``start(version)`` → the coroutine that evaluates it (``evaluate_gate`` with the app's settings).
        self._start = start
        self._tasks: dict[str, asyncio.Task[GateVerdict | None]] = {}

    def start(self, version: str) -> asyncio.Task[GateVerdict | None]:
        task = self._tasks.get(version)
        if task is None or task.done():
            task = asyncio.create_task(self._start(version), name=f"vary-gate-{version}")
            self._tasks[version] = task
            task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[GateVerdict | None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("launch gate evaluation failed", exc_info=task.exception())

    async def wait(self, version: str, seconds: float) -> None:
        """Start ``version``'s evaluation (unless running) and wait up to ``seconds`` for it."""
        task = self.start(version)
        with contextlib.suppress(Exception):  # a timeout, or the task's own failure (logged)
            await asyncio.wait_for(asyncio.shield(task), seconds)

    async def aclose(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


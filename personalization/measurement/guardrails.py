"""Guardrail verdicts: has a variant established harm to a metric it must not hurt? Pure, over counts.

A guardrail is checked continuously — the monitor (:mod:`personalization.measurement.guardrail_monitor`)
looks every few seconds — so a fixed-horizon test would pause healthy variants: looked at after every
batch, an A/A test crosses z = 1.96 far more often than 5 % of the time. Each (variant, guardrail) pair
is therefore a one-sided always-valid test built on the Gaussian-mixture confidence sequence of
:mod:`personalization.measurement.sequential` (Howard et al. 2021): harm is established when the
sequence for the absolute difference *variant − control* excludes 0 on the harmful side (its upper
end below 0 for a ``decrease`` harm, its lower end above 0 for ``increase``). Using one side of the
two-sided sequence keeps the error at most α per pair whenever it is looked at.

Several pairs are tested at once, so each runs at α / (guardrails × variants) — Bonferroni, valid
whatever the dependence between metrics — and only once both arms have ``min_sample`` observations
of the metric (answers, task attempts or visitors): a few early answers carry no evidence, and a
small arm cannot be swung by a handful of visitors.

What is compared, per arm, from the experience's aggregates (:mod:`personalization.store.keys`):

* ``csat``: share of answers 4–5 (``<v>:csat:<score>``), in percentage points;
* ``nps``: each answer +1 (9–10) / 0 / −1 (0–6), the mean ×100 (NPS points);
* ``ces``: mean effort 1–7 (lower is better, so ``increase`` is harm), in scale points;
* ``task_success``: ``task_ok / tasks`` summed over the touchpoint hashes ``ux:<tp>``;
* ``abandonment``: ``abandoned / (tasks + abandoned)`` over the same hashes;
* ``goal:<name>``: ``conv:<name> / visitors`` (unique converters per exposed visitor).

Survey answers count once per metric, visitor, experience and day (the aggregator's results-integrity
rule), so one visitor's flood of ``csat: 1`` answers is one answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from msgspec import Struct

from personalization.measurement.results_counts import Counts
from personalization.measurement.sequential import (
    SEQUENTIAL_TUNING_PARAMETER,
    mean_difference,
    rate_difference,
    sequential_interval,
)
from personalization.types import Experience, Guardrail

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MIN_SAMPLE",
    "GUARDRAIL_METRICS",
    "ArmData",
    "ExperienceStatus",
    "GuardrailVerdict",
    "arm_data",
    "evaluate_guardrails",
    "experience_status",
    "verdict",
]

#: Family-wise level over every (variant, guardrail) pair of one experience.
DEFAULT_ALPHA = 0.05
#: Observations of the metric each arm needs before its test runs.
DEFAULT_MIN_SAMPLE = 200
#: Metrics with a fixed name (plus ``goal:<name>``).
GUARDRAIL_METRICS = ("task_success", "abandonment", "csat", "ces", "nps")

ExperienceStatus = Literal["running", "scheduled", "ended", "paused_by_guardrail"]

#: metric → (unit shown, what is counted)
_UNITS = {
    "task_success": ("pts", "tasks"),
    "abandonment": ("pts", "tasks"),
    "csat": ("pts", "answers"),
    "nps": ("pts", "answers"),
    "ces": ("", "answers"),
}


class ArmData(Struct, frozen=True, kw_only=True):
    """One arm's data for one metric: ``n`` observations; a rate's ``successes``, or a mean's Σx, Σx²."""

    n: int
    successes: int = 0
    total: float = 0.0
    total_sq: float = 0.0


class GuardrailVerdict(Struct, frozen=True, kw_only=True):
    """One (variant, metric) test: ``estimate`` and ``interval`` are variant − control in the metric's
    unit (percentage points, NPS points or CES scale points), the interval always-valid at ``alpha``;
    ``harmed`` when it excludes 0 on the ``harm`` side. ``reason`` says it in one line."""

    variant: int
    metric: str
    harm: Literal["decrease", "increase"]
    harmed: bool
    estimate: float | None
    interval: tuple[float, float] | None
    n_control: int
    n_variant: int
    alpha: float
    reason: str


def _hist(counts: Counts, v: int, metric: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for score, count in counts.with_prefix(v, f"{metric}:").items():
        try:
            out[int(score)] = int(count)
        except ValueError:  # a field that is not a score (never written by the aggregator)
            continue
    return out


def arm_data(metric: str, v: int, all_counts: Counts, ux_counts: Iterable[Counts]) -> ArmData | None:
    """Variant ``v``'s data for ``metric``; ``None`` for a metric Vary does not know."""
    if metric == "csat":
        hist = _hist(all_counts, v, "csat")
        return ArmData(n=sum(hist.values()), successes=sum(c for s, c in hist.items() if s >= 4))
    if metric == "nps":
        hist = _hist(all_counts, v, "nps")
        promoters = sum(c for s, c in hist.items() if s >= 9)
        detractors = sum(c for s, c in hist.items() if s <= 6)
        return ArmData(n=sum(hist.values()), total=float(promoters - detractors),
                       total_sq=float(promoters + detractors))
    if metric == "ces":
        hist = _hist(all_counts, v, "ces")
        return ArmData(n=sum(hist.values()), total=float(sum(s * c for s, c in hist.items())),
                       total_sq=float(sum(s * s * c for s, c in hist.items())))
    if metric in ("task_success", "abandonment"):
        tasks = ok = abandoned = 0
        for counts in ux_counts:
            tasks += counts.count(v, "tasks")
            ok += counts.count(v, "task_ok")
            abandoned += counts.count(v, "abandoned")
        if metric == "task_success":
            return ArmData(n=tasks, successes=min(ok, tasks))
        return ArmData(n=tasks + abandoned, successes=abandoned)
    if metric.startswith("goal:") and len(metric) > 5:
        visitors = all_counts.count(v, "visitors")
        return ArmData(n=visitors, successes=min(all_counts.count(v, f"conv:{metric[5:]}"), visitors))
    return None


def _signed(x: float) -> str:
    return f"{'−' if x < 0 else '+'}{abs(x):.1f}"


def _plain(x: float) -> str:
    return f"{'−' if x < 0 else ''}{abs(x):.1f}"


def verdict(
    variant: int,
    guardrail: Guardrail,
    control: ArmData | None,
    treated: ArmData | None,
    *,
    alpha: float,
    min_sample: int = DEFAULT_MIN_SAMPLE,
    sequential_tuning_parameter: float = SEQUENTIAL_TUNING_PARAMETER,
) -> GuardrailVerdict:
    """The always-valid one-sided test of one variant against control on one guardrail metric."""
    metric = guardrail.metric
    unit, noun = _UNITS.get(metric, ("pts", "visitors"))

    def out(harmed: bool, reason: str, estimate: float | None = None,
            interval: tuple[float, float] | None = None) -> GuardrailVerdict:
        return GuardrailVerdict(
            variant=variant, metric=metric, harm=guardrail.harm, harmed=harmed, estimate=estimate,
            interval=interval, n_control=control.n if control else 0, n_variant=treated.n if treated else 0,
            alpha=alpha, reason=reason,
        )

    if control is None or treated is None:
        return out(False, f"{metric}: not a guardrail metric Vary measures")
    counted = f"{treated.n} vs {control.n} {noun}"
    if min(control.n, treated.n) < min_sample:
        return out(False, f"{metric}: {counted}, waiting for {min_sample} per arm")
    if metric in ("nps", "ces"):
        effect = mean_difference((control.n, control.total, control.total_sq),
                                 (treated.n, treated.total, treated.total_sq), relative=False)
        scale = 100.0 if metric == "nps" else 1.0
    else:
        effect = rate_difference(control.successes, control.n, treated.successes, treated.n, relative=False)
        scale = 100.0
    if effect is None:
        return out(False, f"{metric}: {counted}, no variation to test yet")
    estimate, se = effect
    low, high = sequential_interval(estimate, se, control.n + treated.n, alpha=alpha,
                                    sequential_tuning_parameter=sequential_tuning_parameter)
    shown = (scale * estimate, (scale * low, scale * high))
    harmed = high < 0.0 if guardrail.harm == "decrease" else low > 0.0
    spaced = f" {unit}" if unit else ""
    reason = (f"{metric} {_signed(shown[0])}{spaced} [{_plain(shown[1][0])}, {_plain(shown[1][1])}], "
              f"{counted}")
    return out(harmed, reason, *shown)


def evaluate_guardrails(
    experience: Experience,
    all_hash: Mapping[bytes | str, bytes | str] | Counts | None,
    ux_hashes: Iterable[Mapping[bytes | str, bytes | str] | Counts] = (),
    *,
    alpha: float = DEFAULT_ALPHA,
    min_sample: int = DEFAULT_MIN_SAMPLE,
    sequential_tuning_parameter: float = SEQUENTIAL_TUNING_PARAMETER,
) -> list[GuardrailVerdict]:
    """A verdict per (variant 1…k, guardrail) of ``experience`` from its ``all`` hash and its
    ``ux:<touchpoint>`` hashes (raw ``HGETALL`` replies or :class:`Counts`), each test at
    α / (guardrails × variants)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if min_sample < 1:
        raise ValueError(f"min_sample must be >= 1, got {min_sample}")
    guardrails = experience.guardrails
    k = len(experience.variants)
    if not guardrails or k == 0:
        return []
    counts = all_hash if isinstance(all_hash, Counts) else Counts(all_hash)
    ux = [h if isinstance(h, Counts) else Counts(h) for h in ux_hashes]
    each = alpha / (len(guardrails) * k)
    verdicts = []
    for guardrail in guardrails:
        control = arm_data(guardrail.metric, 0, counts, ux)
        for v in range(1, k + 1):
            verdicts.append(verdict(
                v, guardrail, control, arm_data(guardrail.metric, v, counts, ux), alpha=each,
                min_sample=min_sample, sequential_tuning_parameter=sequential_tuning_parameter,
            ))
    return verdicts


def experience_status(experience: Experience, paused: Mapping[int, str], now: float) -> ExperienceStatus:
    """``ended`` / ``scheduled`` by the schedule, else ``paused_by_guardrail`` when any variant is
    paused (``paused``: variant → reason, current phase), else ``running``."""
    if experience.ends_at is not None and now >= experience.ends_at:
        return "ended"
    if experience.starts_at is not None and now < experience.starts_at:
        return "scheduled"
    return "paused_by_guardrail" if paused else "running"

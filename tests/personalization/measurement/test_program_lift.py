"""Program lift (the ``_global`` experience): goals, NPS, CSAT, CES and retention of the treated against the
global holdout, each checked against scipy / statsmodels or a per-answer computation on fixture counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep

from personalization.measurement.program_lift import lift_of_counts
from personalization.measurement.results_counts import Counts
from personalization.measurement.results_lift import goal_lift
from personalization.measurement.stats import relative_uplift, wilson_interval

ARMS = ("1", "h")


def _fixture(seed: int) -> tuple[dict[str, int], dict[str, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    answers = {
        "1": {"nps": rng.integers(4, 11, 300), "csat": rng.integers(2, 6, 250), "ces": rng.integers(1, 6, 200)},
        "h": {"nps": rng.integers(0, 11, 120), "csat": rng.integers(1, 6, 90), "ces": rng.integers(1, 8, 80)},
    }
    fields = {"1:visitors": 3000, "h:visitors": 700, "1:conv:purchase": 420, "h:conv:purchase": 70,
              "1:returning": 900, "h:returning": 180}
    for arm, metrics in answers.items():
        for metric, values in metrics.items():
            for score, count in zip(*np.unique(values, return_counts=True)):
                fields[f"{arm}:{metric}:{int(score)}"] = int(count)
    return fields, answers


def test_program_lift_matches_reference_computations() -> None:
    fields, answers = _fixture(2)
    counts = Counts(fields)
    lift = lift_of_counts(counts, 0.2, ["purchase", "signup"])
    assert lift.notes == [] and (lift.treated_visitors, lift.holdout_visitors) == (3000, 700)
    assert lift.goals["purchase"] == goal_lift(counts, 1, "purchase")
    assert lift.goals["purchase"].lift == pytest.approx(relative_uplift(70, 700, 420, 3000)[0])
    assert lift.goals["signup"].lift is None  # no conversions in the holdout: no ratio

    # NPS: the difference of means of the +1/0/−1 score, × 100, with the normal interval.
    score = {a: np.where(answers[a]["nps"] >= 9, 1.0, np.where(answers[a]["nps"] <= 6, -1.0, 0.0)) for a in ARMS}
    diff = 100 * (score["1"].mean() - score["h"].mean())
    se = 100 * np.sqrt(sum(score[a].var(ddof=0) / len(score[a]) for a in ARMS))
    assert lift.nps.difference == pytest.approx(diff, rel=1e-12)
    assert lift.nps.difference_interval == pytest.approx((diff - 1.959964 * se, diff + 1.959964 * se), rel=1e-9)
    assert lift.nps.p_value == pytest.approx(2 * sps.norm.sf(abs(diff) / se), rel=1e-9)

    # CSAT: Newcombe's hybrid score interval of the difference of satisfied shares (statsmodels).
    sat = {a: ((answers[a]["csat"] >= 4).sum(), len(answers[a]["csat"])) for a in ARMS}
    lo, hi = confint_proportions_2indep(*sat["1"], *sat["h"], method="newcomb")
    # (rel 1e-6: Vary's Z95 is Φ⁻¹(0.975) to 7 digits)
    assert lift.csat.difference_interval == pytest.approx((100 * lo, 100 * hi), rel=1e-6)
    assert lift.csat.difference == pytest.approx(100 * (sat["1"][0] / sat["1"][1] - sat["h"][0] / sat["h"][1]))

    # CES: Welch's t-test and its interval (scipy).
    welch = sps.ttest_ind(answers["1"]["ces"], answers["h"]["ces"], equal_var=False)
    assert lift.ces.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    ci = welch.confidence_interval(0.95)
    assert lift.ces.difference_interval == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert lift.ces.difference < 0  # the treated spend less effort in this fixture

    # Retention: Wilson per arm, delta-method lift.
    assert lift.retention.treated.score == 0.3 and lift.retention.treated.interval == wilson_interval(900, 3000)
    assert (lift.retention.lift, lift.retention.lift_interval) == relative_uplift(180, 700, 900, 3000)


def test_notes_without_a_global_holdout_or_with_an_empty_arm() -> None:
    empty = lift_of_counts(Counts({}), 0.0, ["purchase"])
    assert any("no global holdout is configured" in n for n in empty.notes)
    assert any("global holdout has no visitors" in n for n in empty.notes)
    assert empty.goals["purchase"].lift is None and empty.goals["purchase"].chance_to_beat_holdout is None
    assert empty.nps.difference is None and empty.retention.lift is None
    only_treated = lift_of_counts(Counts({"1:visitors": 50, "1:conv:purchase": 5}), 0.1, ["purchase"])
    assert only_treated.notes == ["the global holdout has no visitors yet: nothing is compared until it does"]
    assert only_treated.goals["purchase"].treated.visitors == 50 and only_treated.goals["purchase"].p_value is None

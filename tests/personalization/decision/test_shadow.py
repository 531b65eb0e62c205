"""Shadow mode in decide(): the candidate's choice is logged on the exposure, and nothing served changes."""

from __future__ import annotations

import msgspec

from personalization.decision.decide import EntryRequest, decide
from personalization.decision.policy import (
    action_probabilities,
    choose_action,
    uniform_from_key,
)
from personalization.decision.shadow import shadow_choice
from personalization.types import (
    EXPOSURE_DECODER,
    Consent,
    Experience,
    Profile,
    Visitor,
)

BANDIT = Experience(
    id="b", key="banner", name="Banner", type="bandit", variants=("v1", "v2"), weights=(1 / 3, 1 / 3, 1 / 3),
)
AB = Experience(id="a", key="hero", name="Hero", type="ab_test", variants=("h1",), weights=(0.5, 0.5))


class TableModel:
    """A reward model with fixed predictions per channel (the RewardModel seam, no scikit-learn)."""

    def __init__(self, version: str, table: dict[str, list[float]]) -> None:
        self.version = version
        self.n_actions = len(next(iter(table.values())))
        self._table = table

    def predict(self, features: dict[str, float | str]) -> list[float]:
        return list(self._table[str(features["channel"])])


LIVE = TableModel("pol-live", {"web": [0.1, 0.3, 0.1], "ios": [0.1, 0.1, 0.3]})
CANDIDATE = TableModel("pol-candidate", {"web": [0.4, 0.1, 0.1], "ios": [0.4, 0.1, 0.1]})


def _run(visitor: str, channel: str, shadows: dict | None) -> tuple[list, list]:
    counter = iter(range(100))
    outcome = decide(
        Visitor(id=visitor, channel=channel, consent=Consent(analytics=True)),  # type: ignore[arg-type]
        Profile(),
        [EntryRequest("bannerEntry", (BANDIT,)), EntryRequest("heroEntry", (AB,))],
        None,
        1_700_000_000.0,
        new_id=lambda: f"x{next(counter)}",
        policies={"banner": LIVE},
        shadows=shadows,
    )
    return outcome.decisions, outcome.exposures


def test_the_shadow_is_logged_and_serving_is_unchanged() -> None:
    disagreements = 0
    for i in range(300):
        channel = "web" if i % 2 else "ios"
        plain_decisions, plain_exposures = _run(f"v{i}", channel, None)
        decisions, exposures = _run(f"v{i}", channel, {"banner": CANDIDATE})
        assert decisions == plain_decisions  # what is served, and why, does not change
        bandit, hashed = exposures
        cleared = msgspec.structs.replace(bandit, shadow_version=None, shadow_variant=None, shadow_propensity=None)
        assert cleared == plain_exposures[0] and hashed == plain_exposures[1]
        assert plain_exposures[0].shadow_version is None
        # the candidate's own serving distribution, drawn with the live policy's uniform
        probabilities = action_probabilities(CANDIDATE.predict({"channel": channel}))
        expected = choose_action(probabilities, uniform_from_key("banner", f"v{i}"))
        assert (bandit.shadow_version, bandit.shadow_variant) == ("pol-candidate", expected)
        assert bandit.shadow_propensity == probabilities[expected]
        assert hashed.shadow_version is None  # an A/B test has no policy, so no shadow
        disagreements += bandit.shadow_variant != bandit.variant
    assert disagreements > 150  # the candidate prefers control, the live policy avoids it


def test_the_live_policy_in_its_own_shadow_always_agrees() -> None:
    for i in range(200):
        _, exposures = _run(f"v{i}", "web", {"banner": LIVE})
        bandit = exposures[0]
        assert (bandit.shadow_variant, bandit.shadow_propensity) == (bandit.variant, bandit.propensity)


def test_a_candidate_for_another_number_of_variants_has_no_shadow() -> None:
    four = TableModel("pol-four", {"web": [0.1, 0.2, 0.3, 0.4]})
    assert shadow_choice(BANDIT, "v1", {"channel": "web"}, four) is None
    _, exposures = _run("v1", "web", {"banner": four})
    assert exposures[0].shadow_version is None


def test_exposures_logged_before_shadow_mode_still_decode() -> None:
    old = (
        b'{"entry_id":"e","experience":"banner","variant":1,"variant_entry_id":"v1","is_control":false,'
        b'"holdout":false,"propensity":0.5,"id":"x","ts":1.0,"visitor_id":"v","session_id":null,"channel":"web"}'
    )
    exposure = EXPOSURE_DECODER.decode(old)
    assert (exposure.shadow_version, exposure.shadow_variant, exposure.shadow_propensity) == (None, None, None)

"""decide(): the whole decision over in-memory inputs (no Redis: decide is pure)."""

from __future__ import annotations

from personalization.decision.decide import EntryRequest, decide
from personalization.types import Audience, Consent, Experience, Profile, Visitor


class FixedModel:
    """A tiny in-memory SegmentModel: the same scores for everyone."""

    version = "seg-test"
    segments = ("price_sensitive",)

    def __init__(self, score: float) -> None:
        self._score = score

    def score(self, features: dict[str, float | str]) -> dict[str, float]:
        assert features["channel"] in {"web", "ios"}
        return {"price_sensitive": self._score}


SALE = Experience(
    id="e1",
    key="heroSale",
    name="Hero sale",
    type="personalization",
    variants=("heroSale",),
    weights=(0.0, 1.0),
    audience=Audience(id="a", key="price", name="Price sensitive", condition={"segments.price_sensitive": {"$gte": 0.6}}),
)


def _ids() -> object:
    counter = iter(range(1000))
    return lambda: f"x{next(counter)}"


def test_decides_variant_for_matching_segment_and_logs_exposure() -> None:
    outcome = decide(
        Visitor(id="v1", country="us"), Profile(), [EntryRequest("hero", (SALE,)), EntryRequest("plain", ())],
        FixedModel(0.9), now=1000.0, new_id=_ids(),
    )
    hero, plain = outcome.decisions
    assert hero.variant == 1 and hero.variant_entry_id == "heroSale" and hero.experience == "heroSale"
    assert "0.9" in hero.reason and hero.propensity == 1.0
    assert plain.experience is None and plain.variant_entry_id == "plain" and plain.is_control
    assert [e.id for e in outcome.exposures] == [hero.exposure_id, plain.exposure_id]
    assert outcome.exposures[0].segments == {"price_sensitive": 0.9}
    assert outcome.exposures[0].country == "US"  # normalised
    assert outcome.assignments == [("v1", "heroSale", 1)]
    assert outcome.model_version == "seg-test"


def test_no_personalization_consent_serves_baseline_without_scoring() -> None:
    outcome = decide(
        Visitor(id="v1", consent=Consent(personalization=False)), Profile(), [EntryRequest("hero", (SALE,))],
        FixedModel(0.9), now=1.0, new_id=_ids(),
    )
    (decision,) = outcome.decisions
    assert decision.variant_entry_id == "hero" and "consent" in decision.reason
    assert outcome.segments == {} and outcome.model_version is None and outcome.assignments == []


def test_no_analytics_consent_logs_exposure_without_visitor() -> None:
    outcome = decide(
        Visitor(id="v1", consent=Consent(analytics=False)), Profile(), [EntryRequest("hero", (SALE,))],
        FixedModel(0.9), now=1.0, new_id=_ids(),
    )
    assert outcome.decisions[0].variant == 1
    assert outcome.exposures[0].visitor_id is None and outcome.assignments == []


def test_sticky_assignment_from_profile_is_kept() -> None:
    profile = Profile(assignments={"heroSale": 0})
    outcome = decide(Visitor(id="v1"), profile, [EntryRequest("hero", (SALE,))], FixedModel(0.9), 1.0, _ids())
    assert outcome.decisions[0].variant == 0 and "sticky" in outcome.decisions[0].reason
    assert outcome.assignments == []


def test_without_a_model_rule_audiences_still_work() -> None:
    country = Experience(
        id="e2", key="na", name="NA", type="personalization", variants=("heroNa",), weights=(0.0, 1.0),
        audience=Audience(id="a2", key="na", name="NA", condition={"country": {"$in": ["US"]}}),
    )
    outcome = decide(Visitor(id="v", country="US"), Profile(), [EntryRequest("hero", (SALE, country))], None, 1.0, _ids())
    assert outcome.decisions[0].experience == "na" and outcome.segments == {}

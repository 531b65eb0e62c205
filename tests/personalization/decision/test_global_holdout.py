"""The global holdout: deterministic membership of the right share, baselines and one `_global` exposure."""

from __future__ import annotations

import math

from personalization.decision.bucketing import bucket_hash
from personalization.decision.decide import EntryRequest, decide
from personalization.decision.global_holdout import (
    GLOBAL_EXPERIENCE,
    global_share,
    in_global_holdout,
)
from personalization.types import Consent, Experience, Profile, Visitor

AB = Experience(id="e1", key="hero", name="Hero", type="ab_test", variants=("heroB",), weights=(0.0, 1.0))
SIDE = Experience(id="e2", key="side", name="Side", type="personalization", variants=("sideB",), weights=(0.0, 1.0))
ENTRIES = [EntryRequest("hero", (AB,)), EntryRequest("side", (SIDE,)), EntryRequest("plain", ())]
SHARE = 0.1


def _ids() -> object:
    counter = iter(range(1000))
    return lambda: f"x{next(counter)}"


def _decide(visitor_id: str, share: float = SHARE, **visitor: object):
    return decide(
        Visitor(id=visitor_id, **visitor), Profile(), ENTRIES, None, now=5.0, new_id=_ids(), global_holdout=share
    )


def _visitor(held_out: bool) -> str:
    return next(f"v{i}" for i in range(1000) if in_global_holdout(f"v{i}", SHARE) == held_out)


def test_membership_is_the_growthbook_hash_and_holds_the_share_within_binomial_bounds() -> None:
    ids = [f"visitor-{i}" for i in range(20_000)]
    members = sum(in_global_holdout(visitor_id, SHARE) for visitor_id in ids)
    sd = math.sqrt(len(ids) * SHARE * (1 - SHARE))
    assert abs(members - len(ids) * SHARE) < 4 * sd  # 4 sd: a false alarm about once in 16,000 seeds
    assert all(in_global_holdout(v, SHARE) == (bucket_hash("vary-global-holdout", v, 2) < SHARE) for v in ids[:500])
    assert not any(in_global_holdout(v, 0.0) for v in ids[:500])


def test_held_out_visitors_get_every_baseline_and_only_the_global_exposure_names_an_experience() -> None:
    outcome = _decide(_visitor(held_out=True))
    assert [d.variant_entry_id for d in outcome.decisions] == ["hero", "side", "plain"]
    assert all(d.experience is None and d.reason.startswith("global holdout: baseline") for d in outcome.decisions)
    assert "(10% of visitors)" in outcome.decisions[0].reason
    *entries, extra = outcome.exposures
    assert [e.experience for e in entries] == [None, None, None]
    assert (extra.experience, extra.variant, extra.holdout, extra.is_control) == (GLOBAL_EXPERIENCE, 0, True, True)
    assert extra.propensity == SHARE and extra.entry_id == extra.variant_entry_id == "hero"
    assert extra.id not in {d.exposure_id for d in outcome.decisions}
    assert outcome.assignments == []


def test_treated_visitors_are_decided_as_without_the_holdout_plus_one_global_exposure() -> None:
    visitor_id = _visitor(held_out=False)
    treated, plain = _decide(visitor_id), _decide(visitor_id, share=0.0)
    assert treated.decisions == plain.decisions
    assert treated.exposures[:-1] == plain.exposures and treated.assignments == plain.assignments
    extra = treated.exposures[-1]
    assert (extra.experience, extra.variant, extra.holdout, extra.is_control) == (GLOBAL_EXPERIENCE, 1, False, False)
    assert math.isclose(extra.propensity, 1 - SHARE) and extra.visitor_id == visitor_id
    assert len(plain.exposures) == len(ENTRIES)  # share 0: no global exposure at all


def test_no_global_exposure_without_personalization_consent_or_entries() -> None:
    no_consent = _decide(_visitor(held_out=True), consent=Consent(personalization=False))
    assert [e.experience for e in no_consent.exposures] == [None, None, None]
    assert decide(Visitor(id="v1"), Profile(), [], None, now=1.0, global_holdout=SHARE).exposures == []


def test_the_share_in_force_is_contents_else_the_environments_and_is_bounded() -> None:
    assert global_share(None, 0.05) == 0.05 and global_share(0.2, 0.05) == 0.2
    assert global_share(0.0, 0.05) == 0.0  # content's explicit 0 turns it off
    assert global_share(0.8, 0.0) == 0.5 and global_share(float("nan"), 0.1) == 0.0

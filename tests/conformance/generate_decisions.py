"""Generate ``tests/conformance/decisions.json``: the server's own decisions, for every local evaluator.

Why a generated file: "the SDKs decide like Vary" is only a claim until a machine checks it case by
case. The expected answers here come from the SERVER path — ``decide()`` over the snapshot seen through
a :class:`~personalization.decision.live_state.LiveCatalog` with the active models, exactly as
:class:`~personalization.service.Personalizer` calls it — never from the bundle. The bundles stored
beside them are what ``GET /v1/bundle`` would serve for the same state (``fields`` left out). The
Python SDK (``tests/sdk/test_python_sdk.py``) and the JS SDK (Node's test runner, ``sdk/js``) must
reproduce every decision from the bundle alone: variant, entry, holdout flag and reason exactly,
propensities exactly, segment scores to 1e-9.

Three spaces: the demo space (``content/demo/space.json``, with the demo segment model, a guardrail
pause and a phase-2 experience laid over it), the Contentful Personalization demo
(``content/demo/ninetailed.json``: Ninetailed's hash, no segment model) and a synthetic space built here
that exercises what the demos do not: layers, holdouts, traffic allocation, sticky assignments (also
held-out and phase-keyed ones), frequency caps, schedules, bandits (Thompson and ε-greedy with compiled
policies, and one without a policy), regex, segment, history and trait audiences, non-ASCII ids,
consent off.

Run ``python -m tests.conformance.generate_decisions`` to rewrite the file; ``tests/conformance/
test_decisions_current.py`` fails when the committed file is not what this script produces now.
Everything is seeded and the clock is fixed, so the output is a pure function of the code and content.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct

from content.compile import compile_snapshot
from content.snapshot import ContentSnapshot
from content.sources import ExportFileSource
from personalization.decision.audience_validate import validate_condition
from personalization.decision.bundle import Bundle, PolicyCard, build_bundle
from personalization.decision.decide import EntryRequest, decide
from personalization.decision.live_state import LiveCatalog, LiveState
from personalization.decision.policy import CompiledRewardModel
from personalization.seams import RewardModel, SegmentModel
from personalization.store.traits import effective_traits
from personalization.types import (
    Audience,
    Consent,
    Experience,
    FrequencyCap,
    Profile,
    Visitor,
)

__all__ = ["CONFORMANCE_FILE", "Case", "Expected", "build_conformance", "encode_conformance", "main"]

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE_FILE = Path(__file__).with_name("decisions.json")
FORMAT = 1
#: The clock of every case (2025-12-03 22:13:20 UTC): after every demo experience's start.
NOW = 1_764_800_000.0
_DAY = 86_400.0


class ExpectedDecision(Struct, frozen=True, kw_only=True):
    entry_id: str
    experience: str | None
    variant: int
    variant_entry_id: str
    is_control: bool
    holdout: bool
    propensity: float
    reason: str


class GlobalExposure(Struct, frozen=True, kw_only=True):
    variant: int
    holdout: bool
    propensity: float


class Expected(Struct, frozen=True, kw_only=True):
    segments: dict[str, float]
    model_version: str | None
    decisions: list[ExpectedDecision]
    assignments: list[tuple[str, str, int]]
    #: The global holdout's own exposure (experience ``_global``), ``None`` when none is logged.
    global_: GlobalExposure | None = msgspec.field(default=None, name="global")


class Case(Struct, frozen=True, kw_only=True):
    bundle: str
    now: float
    visitor: Visitor
    profile: Profile
    entry_ids: list[str]
    expected: Expected


class ConformanceFile(Struct, frozen=True, kw_only=True):
    format: int
    generator: str
    bundles: dict[str, Bundle]
    cases: list[Case]


class _Space(Struct, frozen=True, kw_only=True):
    """One space as the server serves it: the live catalog, the models, the entries to ask for."""

    name: str
    content_version: str
    live: Any  # LiveCatalog (not a Struct type)
    entry_ids: tuple[str, ...]
    model: Any = None  # SegmentModel | None
    policies: dict[str, Any] = {}  # RewardModel by experience key


# -------------------------------------------------------------------------------------------- spaces


def _snapshot(path: Path) -> ContentSnapshot:
    return compile_snapshot(
        ExportFileSource(path).load(), now=1_700_000_000.0, validate_condition=validate_condition
    )


def demo_segment_model() -> SegmentModel:
    """The demo segment model, trained on the bundled CSV with a fixed clock (deterministic)."""
    from personalization.demo.data import train_demo_model
    from personalization.models.segment_model import load_active_model

    with tempfile.TemporaryDirectory() as directory:
        train_demo_model(Path(directory), created_at=1_700_000_000.0)
        model = load_active_model(Path(directory))
    assert model is not None
    return model


def _entries_with_experiences(snapshot: ContentSnapshot) -> tuple[str, ...]:
    return tuple(sorted(e for e in snapshot.entries if snapshot.experiences_for(e)))


def demo_space(model: SegmentModel) -> _Space:
    snapshot = _snapshot(ROOT / "content" / "demo" / "space.json")
    keys = sorted(snapshot.experiences)
    # A guardrail pause on the first multi-variant experience, phase 2 on another: the live overlay.
    paused_key = next(k for k in keys if len(snapshot.experiences[k].variants) >= 2)
    phased_key = next(k for k in keys if k != paused_key)
    state = LiveState(
        paused={paused_key: {1: "guardrail: conversion rate fell (paused by guardrail)"}},
        phases={phased_key: 2},
        global_holdout=0.0,
    )
    live = LiveCatalog(snapshot, state)
    # One entry without experiences and one unknown id: both get the baseline.
    plain = next(e for e in sorted(snapshot.entries) if not snapshot.experiences_for(e))
    return _Space(
        name="demo",
        content_version=snapshot.version,
        live=live,
        entry_ids=(*_entries_with_experiences(snapshot), plain),
        model=model,
    )


def ninetailed_space() -> _Space:
    snapshot = _snapshot(ROOT / "content" / "demo" / "ninetailed.json")
    live = LiveCatalog(snapshot, LiveState())
    return _Space(
        name="ninetailed",
        content_version=snapshot.version,
        live=live,
        entry_ids=_entries_with_experiences(snapshot),
    )


class _DictCatalog:
    """A catalog from a plain mapping (the synthetic space has no Contentful content)."""

    def __init__(self, by_entry: Mapping[str, tuple[Experience, ...]], global_holdout: float) -> None:
        self._by_entry = dict(by_entry)
        self.global_holdout = global_holdout

    def experiences_for(self, entry_id: str) -> tuple[Experience, ...]:
        return self._by_entry.get(entry_id, ())


def _audience(key: str, condition: dict[str, object]) -> Audience:
    return Audience(id=f"aud-{key}", key=key, name=key.replace("_", " ").title(), condition=condition)


def _policy(key: str, k: int, rng: random.Random, rows: Sequence[int]) -> RewardModel:
    """A compiled reward model with seeded weights over the bandit context's keys."""
    vocabulary = [
        "channel=web", "channel=ios", "country=DE", "country=US", "device=mobile", "device=desktop",
        "segment_price_sensitive", "segment_high_intent", "segment_loyal",
    ]
    weights = {name: tuple(round(rng.uniform(-1.5, 1.5), 6) for _ in range(k)) for name in vocabulary}
    intercepts = tuple(round(rng.uniform(-2.5, -0.5), 6) for _ in range(k))
    card = PolicyCard(version=f"pol-{key}-1", n_actions=k, actions=tuple(float(r) for r in rows))
    return CompiledRewardModel(card, intercepts, weights)


def synthetic_space(model: SegmentModel) -> _Space:
    """Experiences built here to cover every branch of selection (see the module docstring)."""
    rng = random.Random(25)

    def exp(key: str, **fields: Any) -> Experience:
        variants = fields.pop("variants", (f"{key}-v1",))
        k = len(variants) + 1
        weights = fields.pop("weights", tuple(1.0 / k for _ in range(k)))
        return Experience(
            id=f"id-{key}", key=key, name=key.replace("-", " "), type=fields.pop("type", "ab_test"),
            variants=tuple(variants), weights=tuple(weights), **fields,
        )

    by_entry: dict[str, tuple[Experience, ...]] = {
        # Layers: three experiences share one layer (disjoint ranges), on three entries.
        "layerA": (exp("layer-a", layer="checkout", layer_range=(0.0, 0.34)),),
        "layerB": (exp("layer-b", layer="checkout", layer_range=(0.34, 0.67), variants=("lb1", "lb2")),),
        "layerC": (exp("layer-c", layer="checkout", layer_range=(0.67, 1.0), holdout=0.2),),
        # Holdout + partial traffic + uneven weights; sticky assignments hit it too.
        "hero": (
            exp("hero-vip", audience=_audience("vip", {"traits.plan": {"$in": ["pro", "enterprise"]}}),
                variants=("hero-vip-a",), weights=(0.3, 0.7)),
            exp("hero-split", traffic_allocation=0.8, holdout=0.1, variants=("hero-b", "hero-c"),
                weights=(0.5, 0.25, 0.25)),
        ),
        # Segment audience + regex audience + a frequency cap; the next experience catches the rest.
        "banner": (
            exp("banner-deal", type="personalization",
                audience=_audience("deal_seekers", {"segments.price_sensitive": {"$gt": 0.5}}),
                frequency_cap=FrequencyCap(max_exposures=3, period="day")),
            exp("banner-search", audience=_audience("from_search", {"referrer": {"$regexi": "(google|bing)\\."}}),
                frequency_cap=FrequencyCap(max_exposures=2, period="week")),
            exp("banner-fallback", variants=("bf1", "bf2", "bf3"), weights=(0.4, 0.2, 0.2, 0.2)),
        ),
        # Schedules: ended (skipped, named in the reason) before a running one with an end date.
        "promo": (
            exp("promo-old", ends_at=NOW - 10 * _DAY),
            exp("promo-now", starts_at=NOW - 5 * _DAY, ends_at=NOW + 5 * _DAY,
                audience=_audience("returning", {"returning_visitor": True}), variants=("pn1",)),
        ),
        # Bandits: Thompson with a policy, ε-greedy with a policy, and one without a policy yet.
        "recs": (exp("recs-bandit", type="bandit", variants=("r1", "r2", "r3"), weights=(0.25,) * 4,
                     epsilon=0.2, min_probability=0.02),),
        "cta": (exp("cta-greedy", type="bandit", bandit_method="epsilon_greedy", variants=("c1", "c2"),
                    weights=(1 / 3,) * 3, epsilon=0.15, min_probability=0.05),),
        "footer": (exp("footer-new", type="bandit", variants=("f1",), weights=(0.5, 0.5)),),
        # Paused variant (guardrail) and a phase-2 experience with phase-keyed sticky assignments.
        "pricing": (exp("pricing-test", variants=("p1", "p2"), weights=(0.2, 0.4, 0.4)),),
        "nav": (exp("nav-test", variants=("n1",), weights=(0.5, 0.5),
                    audience=_audience("history", {"history.any_page.within.7d": {"$gte": 2}})),
                exp("nav-country", variants=("n2",), weights=(0.5, 0.5),
                    audience=_audience("europe", {"continent": "EU"}))),
    }
    policies = {
        "recs-bandit": _policy("recs-bandit", 4, rng, (400, 300, 2500, 900)),
        "cta-greedy": _policy("cta-greedy", 3, rng, (120, 80, 95)),
    }
    state = LiveState(
        paused={"pricing-test": {2: "guardrail: task success fell for variant 2"}},
        phases={"nav-test": 2},
        global_holdout=0.1,
    )
    live = LiveCatalog(_DictCatalog(by_entry, global_holdout=0.1), state)
    return _Space(
        name="synthetic",
        content_version="synthetic-1",
        live=live,
        entry_ids=(*by_entry, "noExperiences"),
        model=model,
        policies=policies,
    )


# ------------------------------------------------------------------------------------------ visitors


_IDS = ("", "jörg-", "訪問者-", "😀-", "user_")
_COUNTRIES = (None, "DE", "US", "FR", "CA", "JP", "br", "GB")
_DEVICES = (None, "mobile", "desktop", "Tablet")
_REFERRERS = (None, "https://www.google.com/search?q=x", "https://bing.com/", "https://news.example/a", "t.co")
_PAGES = (None, "/pricing", "https://shop.example/garden?utm_campaign=spring", "/")
_PLANS = (None, "pro", "free", "enterprise")


def _visitor(rng: random.Random, index: int, space: str) -> Visitor:
    channel = rng.choice(("web", "web", "web", "ios", "android", "email"))
    utm = {}
    if rng.random() < 0.3:
        utm["campaign"] = rng.choice(("Sale", "spring", "brand"))
    if rng.random() < 0.3:
        utm["source"] = rng.choice(("Google", "newsletter"))
    traits: dict[str, Any] = {}
    plan = rng.choice(_PLANS)
    if plan is not None:
        traits["plan"] = plan
    if rng.random() < 0.2:
        traits["city"] = "Berlin"
    consent = Consent(personalization=rng.random() > 0.05, analytics=rng.random() > 0.08)
    return Visitor(
        id=f"{rng.choice(_IDS)}{space}-{index}-{rng.getrandbits(32):08x}",
        session_id=f"s-{index}" if rng.random() < 0.5 else None,
        channel=channel,
        locale=rng.choice((None, "en-US", "de-DE")),
        device=rng.choice(_DEVICES),
        country=rng.choice(_COUNTRIES),
        referrer=rng.choice(_REFERRERS),
        page=rng.choice(_PAGES),
        utm=utm,
        traits=traits,
        consent=consent,
    )


def _sticky_keys(live: LiveCatalog, entry_ids: Sequence[str]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for entry_id in entry_ids:
        for experience in live.experiences_for(entry_id):
            key = experience.key if experience.phase <= 1 else f"{experience.key}@p{experience.phase}"
            out.append((key, len(experience.variants) + 1))
            if experience.phase > 1:
                out.append((experience.key, len(experience.variants) + 1))  # an old phase's: ignored
    return out


def _profile(rng: random.Random, live: LiveCatalog, entry_ids: Sequence[str]) -> Profile:
    if rng.random() < 0.25:
        return Profile()
    visits = rng.randint(1, 40)
    day = int(NOW // _DAY)
    week = (day + 3) // 7
    assignments: dict[str, int] = {}
    frequency: dict[str, str] = {}
    for key, k in _sticky_keys(live, entry_ids):
        roll = rng.random()
        if roll < 0.12:
            assignments[key] = rng.randrange(k)
        elif roll < 0.15:
            assignments[key] = -1
        elif roll < 0.17:
            assignments[key] = k + 3  # a variant that no longer exists: ignored
        if rng.random() < 0.3:
            n = rng.randint(0, 4)
            stale = rng.random() < 0.3
            frequency[key] = f"{day - (2 if stale else 0)} {n} {week} {n + 1} {n + 2}"
    history: dict[str, str] = {}
    if rng.random() < 0.4:
        stamps = sorted(NOW - rng.uniform(0, 20 * _DAY) for _ in range(rng.randint(1, 4)))
        history["p:https://shop.example/garden"] = " ".join([str(len(stamps))] + [f"{s:.3f}" for s in stamps])
    remembered: dict[str, Any] = {}
    if rng.random() < 0.3:  # traits remembered from earlier requests (the request's win)
        remembered["plan"] = rng.choice(("pro", "enterprise", "free"))
        if rng.random() < 0.5:
            remembered["city"] = "Hamburg"
    return Profile(
        visits=visits,
        page_views=rng.randint(visits, visits * 6),
        conversions=rng.randint(0, 3),
        first_seen=NOW - rng.uniform(0, 200) * _DAY if rng.random() < 0.9 else None,
        last_seen=NOW - rng.uniform(0, 3) * _DAY,
        channels=tuple(sorted(rng.sample(["web", "ios", "email", "store"], rng.randint(1, 3)))),
        goals={"signup": 1} if rng.random() < 0.2 else {},
        assignments=assignments,
        history=history,
        traits=remembered,
        frequency=frequency,
    )


# ------------------------------------------------------------------------------------------ the cases


def _expected(space: _Space, visitor: Visitor, profile: Profile, entry_ids: Sequence[str]) -> Expected:
    """The server's decision: ``decide()`` exactly as ``Personalizer.personalize`` calls it (the
    profile's remembered traits under the request's, ``personalization.store.traits.effective_traits``)."""
    live: LiveCatalog = space.live
    if profile.traits:
        visitor = msgspec.structs.replace(visitor, traits=effective_traits(profile.traits, visitor.traits))
    outcome = decide(
        visitor,
        profile,
        [EntryRequest(entry_id, live.experiences_for(entry_id)) for entry_id in entry_ids],
        space.model,
        NOW,
        new_id=lambda: "conformance",
        policies=space.policies,
        global_holdout=live.global_holdout,
    )
    decisions = [
        ExpectedDecision(
            entry_id=d.entry_id, experience=d.experience, variant=d.variant, variant_entry_id=d.variant_entry_id,
            is_control=d.is_control, holdout=d.holdout, propensity=d.propensity, reason=d.reason,
        )
        for d in outcome.decisions
    ]
    global_exposure = next(
        (GlobalExposure(variant=e.variant, holdout=e.holdout, propensity=e.propensity)
         for e in outcome.exposures if e.experience == "_global"),
        None,
    )
    return Expected(
        segments=outcome.segments,
        model_version=outcome.model_version,
        decisions=decisions,
        assignments=[tuple(a) for a in outcome.assignments],  # type: ignore[misc]
        global_=global_exposure,
    )


def space_bundle(space: _Space, now: float = NOW) -> Bundle:
    """The bundle ``GET /v1/bundle`` serves for this space's state (no fields)."""
    live: LiveCatalog = space.live
    return build_bundle(
        content_version=space.content_version,
        experiences_by_entry={e: live.experiences_for(e) for e in space.entry_ids if live.experiences_for(e)},
        model=space.model,
        policies=space.policies,
        global_holdout=live.global_holdout,
        now=now,
    )


def spaces() -> list[_Space]:
    model = demo_segment_model()
    return [demo_space(model), ninetailed_space(), synthetic_space(model)]


def build_conformance(visitors: Mapping[str, int] | None = None) -> ConformanceFile:
    """Every case of every space (``visitors``: how many visitors per space)."""
    counts = dict(visitors or {"demo": 500, "ninetailed": 400, "synthetic": 450})
    bundles: dict[str, Bundle] = {}
    cases: list[Case] = []
    for space in spaces():
        bundles[space.name] = space_bundle(space)
        rng = random.Random(f"conformance-{space.name}")
        for index in range(counts[space.name]):
            visitor = _visitor(rng, index, space.name)
            profile = _profile(rng, space.live, space.entry_ids)
            entry_ids = list(space.entry_ids)
            if rng.random() < 0.2:  # a subset, in another order: the first entry carries _global
                entry_ids = rng.sample(entry_ids, rng.randint(1, len(entry_ids)))
            cases.append(
                Case(bundle=space.name, now=NOW, visitor=visitor, profile=profile, entry_ids=entry_ids,
                     expected=_expected(space, visitor, profile, entry_ids))
            )
    return ConformanceFile(
        format=FORMAT, generator="tests/conformance/generate_decisions.py", bundles=bundles, cases=cases
    )


_ENCODER = msgspec.json.Encoder()


def encode_conformance(data: ConformanceFile) -> bytes:
    """The file's bytes: one bundle and one case per line, so a diff shows what changed."""
    head = b'{"format":%d,"generator":%s,\n"bundles":{\n' % (data.format, _ENCODER.encode(data.generator))
    bundles = b",\n".join(_ENCODER.encode(name) + b":" + _ENCODER.encode(b) for name, b in data.bundles.items())
    cases = b",\n".join(_ENCODER.encode(case) for case in data.cases)
    return head + bundles + b"},\n\"cases\":[\n" + cases + b"\n]}\n"


def decode_conformance(data: bytes) -> ConformanceFile:
    return msgspec.json.decode(data, type=ConformanceFile)


def main(write: Callable[[bytes], object] = CONFORMANCE_FILE.write_bytes) -> None:
    data = build_conformance()
    write(encode_conformance(data))
    decisions = sum(len(case.expected.decisions) for case in data.cases)
    print(f"{CONFORMANCE_FILE.relative_to(ROOT)}: {len(data.cases)} cases, {decisions} decisions")


if __name__ == "__main__":
    main()

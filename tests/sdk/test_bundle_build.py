"""``build_bundle``: what is left out (unstarted experiences, plugin types), what changes the version,
and what cannot be shipped (a segment model that is not compiled)."""

from __future__ import annotations

import msgspec
import pytest

from personalization.decision.bundle import (
    BundleDecider,
    BundleUnavailable,
    LocalDecision,
    build_bundle,
    check_local,
    decode_bundle,
)
from personalization.decision.decide import EntryRequest, decide
from personalization.types import Experience, Profile, Visitor

NOW = 1_764_800_000.0


def _experience(key: str, **fields: object) -> Experience:
    return Experience(id=key, key=key, name=key, type=fields.pop("type", "ab_test"),  # type: ignore[arg-type]
                      variants=(f"{key}-v1",), weights=(0.5, 0.5), **fields)  # type: ignore[arg-type]


def test_an_experience_is_left_out_until_it_starts_and_its_start_is_a_new_version() -> None:
    launch = _experience("launch", starts_at=NOW + 3600)
    running = _experience("running")
    by_entry = {"hero": (launch, running)}
    before = build_bundle(content_version="c1", experiences_by_entry=by_entry, model=None, policies={},
                          global_holdout=0.0, now=NOW)
    assert set(before.experiences) == {"running"} and before.entries == {"hero": ("running",)}
    assert b"launch" not in msgspec.json.encode(before)
    after = build_bundle(content_version="c1", experiences_by_entry=by_entry, model=None, policies={},
                         global_holdout=0.0, now=NOW + 3600)
    assert after.entries == {"hero": ("launch", "running")} and after.version != before.version
    # once started, the bundle decides exactly as the server does
    visitor = Visitor(id="v-launch")
    server = decide(visitor, Profile(), [EntryRequest("hero", (launch, running))], None, NOW + 4000,
                    new_id=lambda: "x")
    local = BundleDecider(decode_bundle(msgspec.json.encode(after))).decide(visitor, ["hero"], NOW + 4000,
                                                                            new_id=lambda: "x")
    assert server.decisions == local.decisions and server.exposures == local.exposures


def test_the_version_is_a_function_of_content_models_and_live_state() -> None:
    base = {"hero": (_experience("a"),)}
    one = build_bundle(content_version="c1", experiences_by_entry=base, model=None, policies={},
                       global_holdout=0.0, now=NOW)
    same = build_bundle(content_version="c1", experiences_by_entry=base, model=None, policies={},
                        global_holdout=0.0, now=NOW + 10)
    assert one.version == same.version  # the clock alone changes nothing
    paused = {"hero": (msgspec.structs.replace(base["hero"][0], paused={1: "guardrail"}),)}
    phased = {"hero": (msgspec.structs.replace(base["hero"][0], phase=2),)}
    versions = {
        one.version,
        build_bundle(content_version="c2", experiences_by_entry=base, model=None, policies={},
                     global_holdout=0.0, now=NOW).version,
        build_bundle(content_version="c1", experiences_by_entry=paused, model=None, policies={},
                     global_holdout=0.0, now=NOW).version,
        build_bundle(content_version="c1", experiences_by_entry=phased, model=None, policies={},
                     global_holdout=0.0, now=NOW).version,
        build_bundle(content_version="c1", experiences_by_entry=base, model=None, policies={},
                     global_holdout=0.1, now=NOW).version,
    }
    assert len(versions) == 5


def test_plugin_types_are_server_only_and_uncompiled_models_are_refused() -> None:
    bundle = build_bundle(
        content_version="c1",
        experiences_by_entry={"hero": (_experience("custom", type="my_plugin_type"),), "banner": (_experience("b"),)},
        model=None, policies={}, global_holdout=0.0, now=NOW,
    )
    assert bundle.server_only == ("hero",)

    class OpaqueModel:
        version = "opaque-1"
        segments = ("a",)

        def score(self, features: dict) -> dict[str, float]:
            return {"a": 0.5}

    with pytest.raises(BundleUnavailable, match="opaque-1"):
        build_bundle(content_version="c1", experiences_by_entry={}, model=OpaqueModel(), policies={},
                     global_holdout=0.0, now=NOW)


def test_bandit_propensities_may_differ_in_the_last_bits_hashed_ones_may_not() -> None:
    """``check_local``: a JS engine's ``exp``/``erfc`` may round a bandit's propensity differently in the
    last bit (accepted within 1e-9 relative); a hashed experience's propensity is weights arithmetic and
    must be exact; a real edit is rejected either way."""
    from tests.conformance.generate_decisions import (
        CONFORMANCE_FILE,
        decode_conformance,
    )

    data = decode_conformance(CONFORMANCE_FILE.read_bytes())
    decider = BundleDecider(data.bundles["synthetic"])
    kinds: set[str] = set()
    for case in data.cases:
        if case.bundle != "synthetic" or not case.visitor.consent.personalization:
            continue
        for made in case.expected.decisions:
            if made.experience not in ("recs-bandit", "hero-split") or made.experience in kinds:
                continue
            kinds.add(made.experience)
            decision = LocalDecision(
                bundle_version=data.bundles["synthetic"].version, ts=case.now, visitor=case.visitor,
                profile=case.profile, entry_id=made.entry_id, experience=made.experience, variant=made.variant,
                propensity=made.propensity,
            )
            assert check_local(decider, decision)[1] is None
            nudged = msgspec.structs.replace(decision, propensity=made.propensity * (1 + 4e-16))
            assert nudged.propensity != made.propensity
            accepted = check_local(decider, nudged)[1] is None
            assert accepted is (made.experience == "recs-bandit"), made.experience
            edited = msgspec.structs.replace(decision, propensity=made.propensity * (1 + 1e-6))
            assert check_local(decider, edited)[1].startswith("inconsistent")
    assert kinds == {"recs-bandit", "hero-split"}

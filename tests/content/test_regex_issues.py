"""Audience regexes RE2 cannot run become content issues naming the entry (issue #17, item 3).

The experience that uses such an audience is switched off with a message a marketer can act on;
nothing raises, and patterns valid in both RE2 and a browser compile as before.
"""

from __future__ import annotations

from typing import Any

from tests.content.spaces import compile_export, set_field

Export = dict[str, Any]


def test_backreference_pattern_is_a_content_issue_naming_the_entry(demo_export: Export) -> None:
    set_field(demo_export, "northAmerica", "rules", {"email": {"$regex": "^(\\w+)@\\1\\.com$"}})
    snapshot = compile_export(demo_export)

    audience_issue = next(i for i in snapshot.issues if i.entry_id == "northAmerica")
    assert audience_issue.content_type == "varyAudience"
    assert "rules Vary cannot read" in audience_issue.problem
    assert '$.email.$regex: regular expression "^(\\\\w+)@\\\\1\\\\.com$" cannot be used' in audience_issue.problem
    assert "backreference" in audience_issue.problem
    assert "northAmerica" not in snapshot.audiences
    # The experience targeting it is reported and switched off, the rest of the space compiles.
    assert "hero-north-america" not in snapshot.experiences
    assert any(i.entry_id != "northAmerica" and i.content_type == "varyExperience" for i in snapshot.issues)
    assert "banner-shipping-test" in snapshot.experiences


def test_lookahead_pattern_is_a_content_issue(demo_export: Export) -> None:
    set_field(demo_export, "northAmerica", "rules", {"page": {"$regex": "^/pricing(?!/enterprise)"}})
    issues = [i for i in compile_export(demo_export).issues if i.entry_id == "northAmerica"]
    assert len(issues) == 1 and "lookahead" in issues[0].problem


def test_patterns_valid_in_re2_and_a_browser_stay(demo_export: Export) -> None:
    rules = {"page_path": {"$regex": "^/(a+)+$"}, "referrer": {"$regexi": "google\\.(com|de)/"}}
    set_field(demo_export, "northAmerica", "rules", rules)
    snapshot = compile_export(demo_export)

    assert snapshot.issues == ()
    assert snapshot.audiences["northAmerica"].condition["$and"][1] == rules

"""compile_snapshot on mis-modelled spaces: experiences and audiences Vary cannot run are reported (and
switched off) in words a marketer can act on, without breaking the rest of the space."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.content.spaces import (
    DEMO_KEYS,
    compile_export,
    entry,
    fields,
    link,
    remove_field,
    set_field,
    unpublish,
)

Export = dict[str, Any]


# -- mis-modelled spaces -----------------------------------------------------------------------------

Change = Callable[[Export], None]


def _mixed_variant_types(export: Export) -> None:
    set_field(export, "expHeroNorthAmerica", "variants", [link("heroHomeCanada"), link("bannerShippingFree")])


def _duplicate_key(export: Export) -> None:
    set_field(export, "newsletterCopy", "key", "banner-shipping-test")
    entry(export, "newsletterCopy")["sys"]["firstPublishedAt"] = "2025-07-01T10:00:00.000Z"


def _unattached(export: Export) -> None:
    remove_field(export, "bannerNewsletter", "varyExperiences")


# (change, switched-off experience key or None, [(entry id, content type, words in the problem)])
MIS_MODELLED: dict[str, tuple[Change, str | None, list[tuple[str, str, str]]]] = {
    "variant of another content type than the baseline": (
        lambda e: set_field(e, "newsletterCopy", "variants", [link("heroHomeSale")]),
        "newsletter-copy",
        [("newsletterCopy", "varyExperience", "must be the same content type as the entry it replaces")],
    ),
    "variants of mixed content types": (
        _mixed_variant_types,
        "hero-north-america",
        [("expHeroNorthAmerica", "varyExperience", "variants of different content types (banner, hero)")],
    ),
    "key with a brace (it is the cluster hash tag of the aggregates)": (
        lambda e: set_field(e, "newsletterCopy", "key", "}newsletter"),
        "newsletter-copy",
        [("newsletterCopy", "varyExperience", "contains a brace")],
    ),
    "unpublished variant": (
        lambda e: unpublish(e, "heroHomeCanada"),
        "hero-north-america",
        [("expHeroNorthAmerica", "varyExperience", 'links variant "heroHomeCanada", which is not published')],
    ),
    "unpublished audience": (
        lambda e: unpublish(e, "priceSensitive"),
        "hero-sale",
        [("expHeroSale", "varyExperience", 'links audience "priceSensitive", which is not published')],
    ),
    "audience link to something that is not an audience": (
        lambda e: set_field(e, "expHeroSale", "audience", link("heroHomeSale")),
        "hero-sale",
        [("expHeroSale", "varyExperience", "that is not a Vary audience")],
    ),
    "weights of the wrong length": (
        lambda e: set_field(e, "bannerShippingTest", "weights", [0.5, 0.5]),
        "banner-shipping-test",
        [("bannerShippingTest", "varyExperience", "has 2 weights but needs 3")],
    ),
    "weights not summing to 1": (
        lambda e: set_field(e, "bannerShippingTest", "weights", [0.5, 0.3, 0.1]),
        "banner-shipping-test",
        [("bannerShippingTest", "varyExperience", "add up to 0.9, not 1")],
    ),
    "negative weight": (
        lambda e: set_field(e, "bannerShippingTest", "weights", [1.2, -0.1, -0.1]),
        "banner-shipping-test",
        [("bannerShippingTest", "varyExperience", "negative weight")],
    ),
    "weights that are not numbers": (
        lambda e: set_field(e, "bannerShippingTest", "weights", {"control": 1}),
        "banner-shipping-test",
        [("bannerShippingTest", "varyExperience", "not a list of numbers")],
    ),
    "unknown type": (
        lambda e: set_field(e, "newsletterCopy", "type", "multivariate"),
        "newsletter-copy",
        [("newsletterCopy", "varyExperience", 'has type "multivariate"')],
    ),
    "missing key": (
        lambda e: remove_field(e, "newsletterCopy", "key"),
        "newsletter-copy",
        [("newsletterCopy", "varyExperience", "has no key")],
    ),
    "duplicate key": (
        _duplicate_key,
        "newsletter-copy",  # its key is now banner-shipping-test, which the original keeps
        [("newsletterCopy", "varyExperience", 'uses the key "banner-shipping-test", which experience')],
    ),
    "traffic allocation out of range": (
        lambda e: set_field(e, "newsletterCopy", "trafficAllocation", 50),
        "newsletter-copy",
        [("newsletterCopy", "varyExperience", "traffic allocation 50")],
    ),
    "holdout out of range": (
        lambda e: set_field(e, "expHeroSale", "holdout", -0.1),
        "hero-sale",
        [("expHeroSale", "varyExperience", "holdout -0.1")],
    ),
    "no variants": (
        lambda e: set_field(e, "expHeroSale", "variants", []),
        "hero-sale",
        [("expHeroSale", "varyExperience", "has no variants")],
    ),
    "ends before it starts": (
        lambda e: set_field(e, "bannerShippingTest", "endsAt", "2025-01-01"),
        "banner-shipping-test",
        [("bannerShippingTest", "varyExperience", "ends before it starts")],
    ),
    "unreadable date": (
        lambda e: set_field(e, "bannerShippingTest", "startsAt", "next Monday"),
        "banner-shipping-test",
        [("bannerShippingTest", "varyExperience", "start date Vary cannot read")],
    ),
    "audience rules that are not an object": (
        lambda e: set_field(e, "digitalChannels", "rules", ["channel", "web"]),
        "newsletter-copy",
        [
            ("digitalChannels", "varyAudience", "rules that are not a JSON object"),
            ("newsletterCopy", "varyExperience", "which has a problem of its own"),
        ],
    ),
    "minimum score without a segment": (
        lambda e: remove_field(e, "priceSensitive", "segment"),
        "hero-sale",
        [
            ("priceSensitive", "varyAudience", "minimum score but no segment"),
            ("expHeroSale", "varyExperience", "which has a problem of its own"),
        ],
    ),
    "unknown channel": (
        lambda e: set_field(e, "northAmerica", "channels", ["web", "fax"]),
        "hero-north-america",
        [
            ("northAmerica", "varyAudience", "channels Vary does not know: fax"),
            ("expHeroNorthAmerica", "varyExperience", "which has a problem of its own"),
        ],
    ),
    "baseline links an unpublished experience": (
        lambda e: unpublish(e, "expHeroSale"),
        "hero-sale",
        [("heroHome", "hero", 'links experience "expHeroSale", which is not published')],
    ),
}


@pytest.mark.parametrize("case", list(MIS_MODELLED))
def test_mis_modelled_experience_is_reported_and_skipped(demo_export: Export, case: str) -> None:
    change, switched_off, expected = MIS_MODELLED[case]
    change(demo_export)
    snapshot = compile_export(demo_export)

    found = [(i.entry_id, i.content_type, i.problem) for i in snapshot.issues]
    assert len(found) == len(expected), found
    for (entry_id, content_type, problem), (want_id, want_type, words) in zip(found, expected):
        assert (entry_id, content_type) == (want_id, want_type)
        assert words in problem
    assert all(issue.fix for issue in snapshot.issues)

    # The rest of the space still serves.
    running = DEMO_KEYS - {switched_off} if switched_off else DEMO_KEYS
    assert set(snapshot.experiences) == running
    assert fields(snapshot, "heroHome", "de-DE")["title"] == "Alles für dein Zuhause, schon morgen geliefert"
    for entry_id in ("heroHome", "bannerShipping", "bannerNewsletter"):
        assert all(exp.key in running for exp in snapshot.experiences_for(entry_id))


def test_switched_off_experience_keeps_priority_of_the_others(demo_export: Export) -> None:
    unpublish(demo_export, "priceSensitive")
    snapshot = compile_export(demo_export)
    assert [e.key for e in snapshot.experiences_for("heroHome")] == ["hero-north-america"]


def test_duplicate_key_keeps_the_first_published(demo_export: Export) -> None:
    _duplicate_key(demo_export)
    snapshot = compile_export(demo_export)
    assert snapshot.experiences["banner-shipping-test"].id == "bannerShippingTest"
    assert snapshot.experiences_for("bannerNewsletter") == ()


def test_unattached_experience_is_reported_but_compiled(demo_export: Export) -> None:
    _unattached(demo_export)
    snapshot = compile_export(demo_export)

    (issue,) = snapshot.issues
    assert issue.entry_id == "newsletterCopy"
    assert "not linked from any entry" in issue.problem
    assert "Vary experiences field" in issue.fix
    assert "newsletter-copy" in snapshot.experiences
    assert snapshot.experiences_for("bannerNewsletter") == ()


def test_issue_speaks_to_a_marketer(demo_export: Export) -> None:
    set_field(demo_export, "bannerShippingTest", "weights", [0.5, 0.5])
    (issue,) = compile_export(demo_export).issues
    assert issue.problem == (
        'Experience "Shipping banner: returns vs free vs fast" has 2 weights but needs 3: one for the '
        "original and one for each of its 2 variants. It is switched off."
    )
    assert issue.fix == (
        "Enter 3 weights that add up to 1, e.g. [0.34, 0.33, 0.33], or clear them for the default split."
    )


def test_simple_audience_fields_combine_with_rules(demo_export: Export) -> None:
    set_field(demo_export, "northAmerica", "countries", ["ca", "us"])
    set_field(demo_export, "northAmerica", "channels", ["Web"])
    set_field(demo_export, "northAmerica", "devices", ["Mobile"])
    set_field(demo_export, "northAmerica", "newVisitors", True)
    set_field(demo_export, "northAmerica", "rules", {"profile.visits": {"$lt": 3}})
    set_field(demo_export, "northAmerica", "segment", "bargain_hunter")
    snapshot = compile_export(demo_export)

    assert snapshot.issues == ()
    assert snapshot.audiences["northAmerica"].condition == {
        "$and": [
            {
                "segments.bargain_hunter": {"$gte": 0.5},
                "country": {"$in": ["CA", "US"]},
                "channel": {"$in": ["web"]},
                "device": {"$in": ["mobile"]},
                "new_visitor": True,
            },
            {"profile.visits": {"$lt": 3}},
        ]
    }


def test_audience_rules_are_validated(demo_export: Export) -> None:
    pytest.importorskip("personalization.decision.audiences")
    set_field(demo_export, "digitalChannels", "rules", {"channel": {"$inn": ["web"]}})
    issues = compile_export(demo_export).issues

    assert [(i.entry_id, i.content_type) for i in issues] == [
        ("digitalChannels", "varyAudience"),
        ("newsletterCopy", "varyExperience"),
    ]
    assert "rules Vary cannot read" in issues[0].problem


def test_rules_are_checked_by_the_validator_the_caller_passes(demo_export: Export) -> None:
    set_field(demo_export, "northAmerica", "rules", {"country": {"$in": "CA"}})
    checked: list[object] = []

    def validate(condition: object) -> list[str]:
        checked.append(condition)
        return ["$.country.$in: expected a list"] if condition == {"country": {"$in": "CA"}} else []

    snapshot = compile_export(demo_export, validate_condition=validate)
    assert {"country": {"$in": "CA"}} in checked
    assert [i.entry_id for i in snapshot.issues][:1] == ["northAmerica"]
    assert "rules Vary cannot read: $.country.$in: expected a list." in snapshot.issues[0].problem
    # Without a validator the rules are not checked (content does not reach into the decision code).
    unchecked = compile_export(demo_export, validate_condition=None)
    assert unchecked.issues == ()
    assert unchecked.audiences["northAmerica"].condition["$and"][1] == {"country": {"$in": "CA"}}


def test_plugin_experience_types_are_valid_when_passed(demo_export: Export) -> None:
    set_field(demo_export, "bannerShippingTest", "type", "always_first")
    off = compile_export(demo_export)
    assert "banner-shipping-test" not in off.experiences
    assert [issue.problem for issue in off.issues] == [
        'Experience "Shipping banner: returns vs free vs fast" has type "always_first"; Vary runs '
        "personalization, ab_test, bandit. It is switched off."
    ]
    on = compile_export(demo_export, plugin_types=frozenset({"always_first"}))
    assert on.issues == () and on.experiences["banner-shipping-test"].type == "always_first"

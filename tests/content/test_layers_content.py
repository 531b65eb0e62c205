"""Layers in content: ``layer`` / ``layerRange`` compiled into ``Experience.layer`` / ``layer_range``,
equal shares in key order when no range is given, and clashes reported naming the entry and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import content
from content.experiences.layers import parse_layer
from tests.content.spaces import compile_export, set_field

MODEL = Path(content.__file__).parent / "model" / "varyExperience.json"
# Demo experience entries and keys (key order: banner-shipping-test < hero-north-america < hero-sale < newsletter-copy).
BANNER, NORTH, SALE, NEWSLETTER = "bannerShippingTest", "expHeroNorthAmerica", "expHeroSale", "newsletterCopy"


def _layer(export: dict[str, Any], entry_id: str, layer: str, share: list[float] | None = None) -> None:
    set_field(export, entry_id, "layer", layer)
    if share is not None:
        set_field(export, entry_id, "layerRange", share)


def _problems(snapshot: Any, entry_id: str) -> list[str]:
    return [i.problem for i in snapshot.issues if i.entry_id == entry_id]


def test_the_content_model_has_the_layer_fields() -> None:
    fields = {f["id"]: f for f in json.loads(MODEL.read_text(encoding="utf-8"))["fields"]}
    assert fields["layer"]["type"] == "Symbol" and fields["layerRange"]["type"] == "Object"
    assert not fields["layer"]["required"] and not fields["layerRange"]["required"]


def test_without_ranges_a_layer_gets_equal_consecutive_shares_in_key_order(demo_export: dict[str, Any]) -> None:
    for entry_id in (NEWSLETTER, BANNER, SALE):
        _layer(demo_export, entry_id, " page ")
    snapshot = compile_export(demo_export)
    assert snapshot.issues == ()
    x = snapshot.experiences
    assert x["banner-shipping-test"].layer == "page"
    assert x["banner-shipping-test"].layer_range == (0.0, pytest.approx(1 / 3))
    assert x["hero-sale"].layer_range == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert x["newsletter-copy"].layer_range == (pytest.approx(2 / 3), 1.0)
    assert x["hero-north-america"].layer is None and x["hero-north-america"].layer_range is None
    # What each entry runs carries the same share.
    (banner,) = snapshot.experiences_for("bannerShipping")
    assert banner.layer_range == x["banner-shipping-test"].layer_range
    assert [e.key for e in snapshot.experiences_for("heroHome")] == ["hero-sale", "hero-north-america"]


def test_given_ranges_are_kept(demo_export: dict[str, Any]) -> None:
    _layer(demo_export, BANNER, "banners", [0, 0.2])
    _layer(demo_export, NEWSLETTER, "banners", [0.5, 1])
    snapshot = compile_export(demo_export)
    assert snapshot.issues == ()
    assert snapshot.experiences["banner-shipping-test"].layer_range == (0.0, 0.2)
    assert snapshot.experiences["newsletter-copy"].layer_range == (0.5, 1.0)


def test_an_overlapping_range_is_an_issue_naming_the_entry_and_field(demo_export: dict[str, Any]) -> None:
    _layer(demo_export, BANNER, "banners", [0, 0.6])
    _layer(demo_export, NEWSLETTER, "banners", [0.5, 1])
    snapshot = compile_export(demo_export)
    (problem,) = _problems(snapshot, NEWSLETTER)
    assert "layerRange" in problem and "[0.5, 1)" in problem and "[0, 0.6)" in problem
    assert "banner-shipping-test" in problem and "switched off" in problem
    assert "newsletter-copy" not in snapshot.experiences
    assert snapshot.experiences_for("bannerNewsletter") == ()
    assert snapshot.experiences["banner-shipping-test"].layer_range == (0.0, 0.6)


def test_a_layer_mixing_ranges_and_none_switches_off_the_one_without(demo_export: dict[str, Any]) -> None:
    _layer(demo_export, BANNER, "banners", [0, 0.5])
    _layer(demo_export, NEWSLETTER, "banners")
    snapshot = compile_export(demo_export)
    (problem,) = _problems(snapshot, NEWSLETTER)
    assert "no layer range (field layerRange)" in problem and '"banners"' in problem
    assert "newsletter-copy" not in snapshot.experiences


@pytest.mark.parametrize(
    ("layer", "share", "said"),
    [
        ("page", [0.5, 1.5], "layer range (field layerRange)"),
        ("page", [-0.1, 0.5], "layer range (field layerRange)"),
        ("page", [0.6, 0.4], "layer range (field layerRange)"),
        ("page", [0.5], "layer range (field layerRange)"),
        ("page", "half", "layer range (field layerRange)"),
        ("page", [True, 1], "layer range (field layerRange)"),
        (None, [0, 0.5], "but no layer"),
        (42, None, "layer (field layer) that is not a name"),
        ("x" * 65, None, "longer than 64"),
    ],
)
def test_a_bad_layer_or_range_is_an_issue_naming_the_entry_and_field(
    demo_export: dict[str, Any], layer: object, share: object, said: str
) -> None:
    if layer is not None:
        set_field(demo_export, BANNER, "layer", layer)
    set_field(demo_export, BANNER, "layerRange", share)
    snapshot = compile_export(demo_export)
    (problem,) = _problems(snapshot, BANNER)
    assert said in problem and problem.startswith('Experience "') and "switched off" in problem
    assert "banner-shipping-test" not in snapshot.experiences


def test_parse_layer_reads_blank_as_none() -> None:
    assert parse_layer(None, None) == (None, None, [])
    assert parse_layer("", []) == (None, None, [])
    assert parse_layer(" hp ", [0, 1]) == ("hp", (0.0, 1.0), [])

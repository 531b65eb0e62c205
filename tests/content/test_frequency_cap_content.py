"""``frequencyCap`` on a varyExperience compiled into ``Experience.frequency_cap``; a value Vary cannot
read is reported naming the entry and switches the experience off."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import content
from personalization.types import FrequencyCap
from tests.content.spaces import compile_export, set_field

MODEL = Path(content.__file__).parent / "model" / "varyExperience.json"


def test_the_content_model_has_the_field() -> None:
    fields = {f["id"]: f for f in json.loads(MODEL.read_text(encoding="utf-8"))["fields"]}
    assert fields["frequencyCap"]["type"] == "Object" and not fields["frequencyCap"]["required"]


def test_a_cap_compiles(demo_export: dict[str, Any]) -> None:
    set_field(demo_export, "bannerShippingTest", "frequencyCap", {"max": 3, "per": "week"})
    snapshot = compile_export(demo_export)
    assert snapshot.issues == ()
    assert snapshot.experiences["banner-shipping-test"].frequency_cap == FrequencyCap(max_exposures=3, period="week")
    assert snapshot.experiences["hero-sale"].frequency_cap is None
    (banner,) = snapshot.experiences_for("bannerShipping")
    assert banner.frequency_cap == FrequencyCap(max_exposures=3, period="week")


def test_a_cap_vary_cannot_read_is_reported_and_switches_the_experience_off(demo_export: dict[str, Any]) -> None:
    set_field(demo_export, "bannerShippingTest", "frequencyCap", {"max": 3, "per": "fortnight"})
    snapshot = compile_export(demo_export)
    problems = [i.problem for i in snapshot.issues if i.entry_id == "bannerShippingTest"]
    assert len(problems) == 1 and "per 'fortnight'" in problems[0]
    assert "banner-shipping-test" not in snapshot.experiences

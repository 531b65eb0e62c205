"""``varySurvey`` entries compile like experiences (issue 24): the demo space's surveys compile, and a
bad trigger, a missing question, a sampling rate out of range or a broken experience link each
become a content issue naming the entry, with the survey left out and the space still serving."""

from __future__ import annotations

import copy

import pytest

from content.surveys import compile_surveys, parse_trigger
from personalization.types import SurveyTrigger
from tests.content.spaces import Export, compile_export, entry, set_field


@pytest.fixture
def export(demo_export: Export) -> Export:
    return copy.deepcopy(demo_export)


def test_the_demo_space_has_a_checkout_csat_and_an_nps(export: Export) -> None:
    snapshot = compile_export(export)
    assert snapshot.issues == ()
    csat, nps = snapshot.surveys["checkout-csat"], snapshot.surveys["relationship-nps"]
    assert csat.metric == "csat" and csat.trigger == SurveyTrigger(kind="task_success", detail="checkout")
    assert csat.experience == "banner-shipping-test" and csat.cap_days == 30.0 and csat.sampling_rate == 1.0
    assert set(csat.texts) == {"en-US", "de-DE"} and csat.texts["de-DE"].question.startswith("Wie zufrieden")
    assert nps.metric == "nps" and nps.trigger.label == "visits:3" and nps.sampling_rate == 0.25
    assert nps.max_per_person == 2


@pytest.mark.parametrize(
    ("raw", "label"),
    [("task_success:checkout", "task_success:checkout"), ("task_failure: search ", "task_failure:search"),
     ("page:/thanks*", "page:/thanks*"), ("visits:03", "visits:3"), ("purchase", "purchase"),
     ("exit_intent", "exit_intent")],
)
def test_triggers_read(raw: str, label: str) -> None:
    trigger = parse_trigger(raw)
    assert trigger is not None and trigger.label == label


@pytest.mark.parametrize("raw", ["after_checkout", "task_success:", "visits:0", "visits:x", "page", 3, None])
def test_bad_triggers_do_not_read(raw: object) -> None:
    assert parse_trigger(raw) is None


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("trigger", "after checkout", "trigger 'after checkout'"),
        ("samplingRate", 1.5, "sampling rate 1.5"),
        ("capDays", 2.5, "Days between surveys"),
        ("metric", "ces5", "metric 'ces5'"),
        ("experience", {"sys": {"type": "Link", "linkType": "Entry", "id": "nowhere"}}, "'nowhere'"),
        ("experience", {"sys": {"type": "Link", "linkType": "Entry", "id": "heroHome"}}, "'heroHome'"),
    ],
)
def test_a_bad_survey_is_left_out_with_an_issue(export: Export, field: str, value: object, words: str) -> None:
    set_field(export, "surveyCheckoutCsat", field, value)
    snapshot = compile_export(export)
    assert "checkout-csat" not in snapshot.surveys and "relationship-nps" in snapshot.surveys
    (issue,) = [i for i in snapshot.issues if i.entry_id == "surveyCheckoutCsat"]
    assert words in issue.problem and "not shown" in issue.problem and issue.content_type == "varySurvey"
    assert issue.fix


def test_a_missing_question_or_locale_text_is_an_issue(export: Export) -> None:
    fields = entry(export, "surveyCheckoutCsat")["fields"]
    del fields["question"]["en-US"]
    snapshot = compile_export(export)
    (issue,) = [i for i in snapshot.issues if i.entry_id == "surveyCheckoutCsat"]
    assert "no question in the default locale en-US" in issue.problem and "checkout-csat" not in snapshot.surveys

    items = compile_export(export).items
    assert items is not None
    # A locale without a fallback and without the words: reported, asked in the default locale.
    fixed = copy.deepcopy(export)
    entry(fixed, "surveyCheckoutCsat")["fields"]["question"] = {"en-US": "How was checkout?"}
    snapshot = compile_export(fixed)
    surveys, issues = compile_surveys(snapshot.items, "en-US", {"en-US": None, "de-DE": None},  # type: ignore[arg-type]
                                      snapshot.experiences)
    assert surveys["checkout-csat"].texts["de-DE"].question == "How was checkout?"
    (warning,) = [i for i in issues if i.entry_id == "surveyCheckoutCsat"]
    assert "no question (or SUS statements) in de-DE" in warning.problem and "de-DE" in warning.fix
    # With the space's fallback (de-DE → en-US) the same entry is fine.
    assert not [i for i in snapshot.issues if i.entry_id == "surveyCheckoutCsat"]


def test_sus_needs_ten_statements_and_tags_belong_to_feedback(export: Export) -> None:
    set_field(export, "surveyRelationshipNps", "metric", "sus")
    set_field(export, "surveyRelationshipNps", "susItems", ["I would use it often"] * 9)
    set_field(export, "surveyCheckoutCsat", "problemTags", ["delivery"])
    snapshot = compile_export(export)
    (sus,) = [i for i in snapshot.issues if i.entry_id == "surveyRelationshipNps"]
    assert "9 SUS statements" in sus.problem
    (tags,) = [i for i in snapshot.issues if i.entry_id == "surveyCheckoutCsat"]
    assert "only feedback prompts" in tags.problem and snapshot.surveys["checkout-csat"].problem_tags == ()
    set_field(export, "surveyRelationshipNps", "susItems", [f"Statement {i}" for i in range(10)])
    assert compile_export(export).surveys["relationship-nps"].texts["en-US"].items[9] == "Statement 9"


def test_a_shared_key_keeps_the_first_published(export: Export) -> None:
    set_field(export, "surveyRelationshipNps", "key", "checkout-csat")
    snapshot = compile_export(export)
    assert snapshot.surveys["checkout-csat"].id == "surveyCheckoutCsat"
    (issue,) = [i for i in snapshot.issues if i.entry_id == "surveyRelationshipNps"]
    assert 'key "checkout-csat"' in issue.problem


def test_an_experience_switched_off_keeps_its_survey_and_is_reported_once(export: Export) -> None:
    set_field(export, "bannerShippingTest", "weights", [0.5, 0.5])
    snapshot = compile_export(export)
    assert "banner-shipping-test" not in snapshot.experiences
    assert snapshot.surveys["checkout-csat"].experience == "banner-shipping-test"
    assert [i.entry_id for i in snapshot.issues] == ["bannerShippingTest"]

"""Which survey is due (issue 24), pure: triggers, the attached experience, the cap across surveys,
``max_per_person`` and deterministic sampling by hash, checked over 10,000 simulated people."""

from __future__ import annotations

import math

from personalization.decision.bucketing import bucket_hash
from personalization.decision.surveys import (
    DAY_S,
    SurveyState,
    due_survey,
    in_sample,
    page_matches,
    parse_state,
    watched_triggers,
)
from personalization.types import SurveyDefinition, SurveyText, SurveyTrigger

NOW = 1_767_000_000.0
TEXT = {"en-US": SurveyText(question="How was it?")}


def survey(key: str, kind: str, detail: str | None = None, **options: object) -> SurveyDefinition:
    return SurveyDefinition(id=f"e-{key}", key=key, name=key, metric="csat",  # type: ignore[arg-type]
                            trigger=SurveyTrigger(kind=kind, detail=detail), texts=TEXT, **options)  # type: ignore[arg-type]


CHECKOUT = survey("checkout-csat", "task_success", "checkout", experience="banner")
NPS = survey("nps", "visits", "3")
THANKS = survey("thanks", "page", "/thanks*")


def test_a_task_trigger_is_due_once_while_fresh() -> None:
    fired = SurveyState(triggered_at={"task_success:checkout": NOW - 60})
    due = due_survey([CHECKOUT], person_id="p", state=fired, now=NOW, variants={"banner": 2})
    assert due is not None and due.trigger == "task_success:checkout" and due.variant == 2
    assert due.experience == "banner"
    assert due_survey([CHECKOUT], person_id="p", state=SurveyState(), now=NOW, variants={"banner": 2}) is None
    stale = SurveyState(triggered_at={"task_success:checkout": NOW - 2 * DAY_S})
    assert due_survey([CHECKOUT], person_id="p", state=stale, now=NOW, variants={"banner": 2}) is None
    # Shown after the trigger fired: that occurrence is used up (cap 0 days, so only this rule holds).
    uncapped = survey("checkout-csat", "task_success", "checkout", cap_days=0.0)
    asked = SurveyState(triggered_at={"task_success:checkout": NOW - 60}, shown_at={"checkout-csat": NOW - 30})
    assert due_survey([uncapped], person_id="p", state=asked, now=NOW) is None
    again = SurveyState(triggered_at={"task_success:checkout": NOW - 10}, shown_at={"checkout-csat": NOW - 30})
    assert due_survey([uncapped], person_id="p", state=again, now=NOW) is not None


def test_an_attached_survey_is_only_for_people_in_its_experience() -> None:
    fired = SurveyState(triggered_at={"task_success:checkout": NOW})
    assert due_survey([CHECKOUT], person_id="p", state=fired, now=NOW, variants={"other": 1}) is None
    due = due_survey([CHECKOUT], person_id="p", state=fired, now=NOW, variants={"banner": 0})
    assert due is not None and due.variant == 0


def test_page_visits_and_exit_intent_triggers() -> None:
    assert page_matches("/thanks*", "https://shop.example/thanks/42?x=1")
    assert page_matches("/checkout/done", "/checkout/done/") and not page_matches("/checkout/done", "/checkout")
    assert page_matches("order-confirmed", "order-confirmed")  # an app's screen name
    assert not page_matches("/thanks*", None)
    state = SurveyState()
    assert due_survey([THANKS], person_id="p", state=state, now=NOW, page="/thanks/1").trigger == "page:/thanks*"  # type: ignore[union-attr]
    assert due_survey([NPS], person_id="p", state=state, now=NOW, visits=2) is None
    assert due_survey([NPS], person_id="p", state=state, now=NOW, visits=3) is not None
    assert due_survey([survey("exit", "exit_intent")], person_id="p", state=state, now=NOW) is not None


def test_the_cap_holds_across_every_survey_and_max_per_person() -> None:
    recently = SurveyState(last_shown=NOW - 29 * DAY_S)
    assert due_survey([NPS, THANKS], person_id="p", state=recently, now=NOW, visits=5, page="/thanks") is None
    later = SurveyState(last_shown=NOW - 31 * DAY_S)
    due = due_survey([NPS, THANKS], person_id="p", state=later, now=NOW, visits=5, page="/thanks")
    assert due is not None and due.survey.key == "thanks"  # a page beats a visit count
    once = survey("once", "visits", "1", max_per_person=1, cap_days=0.0)
    assert due_survey([once], person_id="p", state=SurveyState(shown={"once": 1}), now=NOW, visits=1) is None


def test_sampling_is_deterministic_independent_and_at_the_rate_over_10000_people() -> None:
    people = [f"person-{i}" for i in range(10_000)]
    for rate in (0.05, 0.25, 0.5):
        sampled = [p for p in people if in_sample(p, "nps", rate)]
        expected, sd = rate * len(people), math.sqrt(len(people) * rate * (1 - rate))
        assert abs(len(sampled) - expected) < 4 * sd, (rate, len(sampled))
        assert sampled == [p for p in people if in_sample(p, "nps", rate)]  # same people every time
    nested = {p for p in people if in_sample(p, "nps", 0.1)} <= {p for p in people if in_sample(p, "nps", 0.3)}
    assert nested  # raising the rate only adds people
    a = {p for p in people if in_sample(p, "a", 0.5)}
    b = {p for p in people if in_sample(p, "b", 0.5)}
    both = len(a & b) / len(people)
    assert abs(both - 0.25) < 0.02  # independent samples per survey
    assert all(in_sample(p, "x", 1.0) for p in people[:100]) and not any(in_sample(p, "x", 0.0) for p in people[:100])
    assert in_sample("person-1", "nps", 0.5) == (bucket_hash("vary-survey:nps", "person-1", 2) < 0.5)  # type: ignore[operator]
    sampled_nps = survey("nps", "visits", "1", sampling_rate=0.2)
    due = [p for p in people if due_survey([sampled_nps], person_id=p, state=SurveyState(), now=NOW, visits=1)]
    assert due == [p for p in people if in_sample(p, "nps", 0.2)]


def test_state_parsing_and_watched_triggers() -> None:
    raw = {"last": "100.5", "s:nps": "100.5", "n:nps": "2", "t:purchase": "90", "junk": "x", "n:bad": "x"}
    assert parse_state(raw) == SurveyState(last_shown=100.5, shown_at={"nps": 100.5}, shown={"nps": 2},
                                           triggered_at={"purchase": 90.0})
    assert watched_triggers([CHECKOUT, NPS, THANKS, survey("buy", "purchase")]) == {"task_success:checkout", "purchase"}

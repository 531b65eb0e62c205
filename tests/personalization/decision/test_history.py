"""The ``history`` audience attribute: parsed only when read, windows counted from the kept timestamps."""

from __future__ import annotations

import pytest

from content.experiences.ninetailed_history import view_query
from personalization.decision import history
from personalization.decision.audiences import eval_condition
from personalization.decision.context import audience_attributes
from personalization.types import Profile, Visitor

NOW = 1_767_000_000.0
DAY = 86_400
RAW = {
    "p:https://shop.example/pricing": f"12 {NOW - 9 * DAY:.0f} {NOW - 3 * DAY:.0f} {NOW - 60:.0f}",
    "p:/docs/v1.2/setup.html": f"1 {NOW - 2 * DAY:.0f}",
    "e:signup": f"2 {NOW - 30 * DAY:.0f} {NOW - 3600:.0f}",
    "x:unknown": "ignored",
}


def attributes(raw: dict[str, str] = RAW) -> dict[str, object]:
    return audience_attributes(Visitor(id="v"), Profile(history=raw), {}, now=NOW)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"history.pages": {"$elemMatch": {"path": "/pricing", "count": {"$gte": 12}}}}, True),
        ({"history.pages": {"$elemMatch": {"path": "/pricing", "within.7d": {"$gte": 2}}}}, True),
        ({"history.pages": {"$elemMatch": {"path": "/pricing", "within.7d": {"$gte": 3}}}}, False),
        ({"history.pages": {"$elemMatch": {"path": "/pricing", "within.10d": 3}}}, True),
        ({"history.pages": {"$elemMatch": {"path": "/pricing", "within.2m": 1}}}, True),
        ({"history.pages": {"$elemMatch": {"url": {"$regex": "shop\\.example"}, "count": {"$gte": 1}}}}, True),
        ({"history.pages": {"$elemMatch": {"path": "/docs/v1.2/setup.html", "count": 1}}}, True),  # dots in paths
        ({"history.pages.0.path": "/pricing"}, True),  # latest first
        ({"history.events.signup.count": 2}, True),
        ({"history.events.signup.within.1d": 1}, True),
        ({"history.events.signup.within.31d": 2}, True),
        ({"history.events.signup.within.fortnight": {"$exists": True}}, False),  # not a window
        ({"history.events.nothing.within.1d": {"$exists": False}}, True),
        ({"history.any_page.count": 13}, True),
        ({"history.any_page.within.3d": 3}, True),  # a window includes its edge
        ({"history.any_event.within.1w": 1}, True),
        # views summed over every kept page a query matches
        ({"history.views.path~pre~%2F.count": 13}, True),
        ({"history.views.path~pre~%2F.within.3d": 3}, True),
        ({"history.views.url~has~shop%2Eexample.count": 12}, True),
        ({"history.views.path~eq~%2Fdocs%2Fv1%2E2%2Fsetup%2Ehtml.count": 1}, True),
        ({"history.views.path~nhas~pricing&path~suf~%2Ehtml.count": 1}, True),
        ({"history.views.path~in~%2Fa|%2Fpricing.count": 12}, True),
        ({"history.views.path~eq~%2Fnever.count": 0}, True),
        ({"history.views.path~zz~x.count": {"$exists": True}}, False),  # not a query
    ],
)
def test_history_conditions(condition: dict[str, object], expected: bool) -> None:
    assert eval_condition(attributes(), condition) is expected


def test_the_history_is_not_parsed_unless_a_condition_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real = history.parse_entry

    def counting(raw: str) -> tuple[int, list[float]]:
        parsed.append(raw)
        return real(raw)

    monkeypatch.setattr(history, "parse_entry", counting)
    document = attributes()
    assert eval_condition(document, {"country": {"$exists": False}}) and parsed == []
    assert eval_condition(document, {"history.events.signup.count": 2}) and len(parsed) == 3
    assert eval_condition(document, {"history.any_page.count": 13}) and len(parsed) == 3  # once per decision


def test_an_empty_or_damaged_history_reads_as_nothing_seen() -> None:
    document = attributes({"p:/a": "lots", "e:b": ""})
    assert eval_condition(document, {"history.pages": {"$elemMatch": {"path": "/a", "count": 0}}})
    assert eval_condition(document, {"history.events.b.count": 0, "history.any_event.within.1d": 0})
    assert eval_condition(attributes({}), {"history.pages": {"$size": 0}, "history.any_page.count": 0})


def test_the_document_shows_what_was_read() -> None:
    document = attributes({"e:signup": f"1 {NOW - 10:.0f}"})
    signup = document["history"]["events"]["signup"]  # type: ignore[index]
    assert signup["within"]["1h"] == 1 and signup["within"]["5s"] == 0
    assert dict(signup["within"]) == {"1h": 1, "5s": 0}
    assert set(document["history"]) == {"pages", "events", "any_page", "any_event", "views"}  # type: ignore[arg-type]


@pytest.mark.parametrize(("key", "seconds"), [("7d", 604_800.0), ("12h", 43_200.0), ("90m", 5400.0),
                                              ("45s", 45.0), ("2w", 1_209_600.0), ("1.5d", 129_600.0)])
def test_window_keys(key: str, seconds: float) -> None:
    assert history.window_seconds(key) == seconds


@pytest.mark.parametrize("key", ["7", "d", "7 d", "-1d", "7y", "count"])
def test_not_window_keys(key: str) -> None:
    assert history.window_seconds(key) is None


@pytest.mark.parametrize("value", ["/pricing", "a.b~c&d|e%f g", "ünï/çødé", "*"])
def test_the_content_side_writes_queries_the_decision_side_reads(value: str) -> None:
    """content may not import personalization.decision, so the query encoding lives on both sides."""
    written = view_query([("path", "eq", [value]), ("url", "in", [value, "/x"])])
    assert written == history.view_query([("path", "eq", [value]), ("url", "in", [value, "/x"])])
    document = attributes({f"p:{value}": f"4 {NOW:.0f}"})
    assert eval_condition(document, {f"history.views.{view_query([('path', 'eq', [value])])}.count": 4})

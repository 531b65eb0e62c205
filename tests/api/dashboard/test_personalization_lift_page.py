"""The dashboard answers "is personalizing working?" first: the lift vs holdout on the list and the page."""

from __future__ import annotations

import re
from html import unescape

from litestar.testing import TestClient

from api.dashboard.lift_view import NOT_ENOUGH, lift_headline
from personalization.measurement.results_lift import ArmRate, PersonalizationLift
from tests.api.http.lift_traffic import EXPERIENCE, plant_lift


def _text(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def _headline(lift: dict) -> str:  # type: ignore[type-arg]
    low, high = lift["lift_interval"]
    return f"{lift['lift'] * 100:+.0f} % [{low * 100:+.0f} %, {high * 100:+.0f} %] vs holdout"


def test_list_and_page_show_the_lift_first(client: TestClient, redis_url: str, admin: dict[str, str]) -> None:
    body = plant_lift(client, redis_url, admin)
    lift = body["personalization_lift"]["purchase"]
    headline = _headline(lift)

    listing = client.get("/dashboard", headers=admin).text
    row = re.search(rf'<tr data-experience="{EXPERIENCE}">(.*?)</tr>', listing, re.DOTALL)
    assert row, listing
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row.group(1), re.DOTALL)
    assert headline in _text(cells[1])  # right after the experience's name
    assert "to beat control" not in _text(row.group(1))  # no chance against the empty control
    header = re.search(r"<thead>(.*?)</thead>", listing, re.DOTALL)
    assert header and _text(header.group(1)).split("Personalization lift")[0].strip() == "Experience"

    page = client.get(f"/dashboard/experiences/{EXPERIENCE}", headers=admin).text
    after_h1 = page.split("</h1>", 1)[1]
    first_heading = re.search(r"<h2[^>]*>(.*?)</h2>", after_h1)
    assert first_heading and first_heading.group(1) == "Personalization lift"
    section = after_h1.split("</section>", 1)[0]
    assert headline in _text(section)
    assert f"{lift['treated']['visitors']:,}" in section and f"{lift['holdout']['visitors']:,}" in section
    # The empty control is explained, not scored.
    assert "control has no visitors" in page and "to beat control: " not in page
    control_row = re.search(r'<tr data-variant="0">(.*?)</tr>', page, re.DOTALL)
    assert control_row and "no visitors: not compared" in control_row.group(1)
    # Old enough to call is judged on personalized vs holdout, not on the empty control.
    assert min(lift["holdout"]["visitors"], lift["treated"]["visitors"]) >= 100
    assert min(lift["holdout"]["conversions"], lift["treated"]["conversions"]) >= 25
    assert "Too young to call" not in page


def test_a_null_lift_reads_not_enough_data(client: TestClient, admin: dict[str, str]) -> None:
    body = client.get(f"/v1/experiences/{EXPERIENCE}/results", headers=admin).json()
    assert body["personalization_lift"]["purchase"]["lift"] is None  # no traffic yet
    listing = client.get("/dashboard", headers=admin).text
    row = re.search(rf'<tr data-experience="{EXPERIENCE}">(.*?)</tr>', listing, re.DOTALL)
    assert row and NOT_ENOUGH in row.group(1)
    page = client.get(f"/dashboard/experiences/{EXPERIENCE}", headers=admin).text
    assert NOT_ENOUGH in page.split("</section>", 1)[0]
    assert "Too young to call: the personalized visitors and the holdout each need" in page
    nobody = ArmRate(visitors=0, conversions=0, rate=None, interval=None)
    empty = PersonalizationLift(
        treated=nobody, holdout=nobody, lift=None, lift_interval=None, p_value=None,
        sequential_interval=None, sequential_p_value=None, chance_to_beat_holdout=None,
    )
    assert lift_headline(empty) == NOT_ENOUGH == lift_headline(None)


"""Contentful Personalization custom flags over HTTP: ``"flags": true`` answers Ninetailed's ``changes``.

The space is Contentful's marketing-contentful-next export with the two custom-flag experiences of
tests/content/test_ninetailed_flags.py added (one for everybody, one for its "North America"
audience). The answer's ``changes`` must hold, for each flag experience the visitor is in, the value
of the arm Ninetailed's hash picks, in Ninetailed's ``Change`` shape; one exposure per flag experience.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from personalization.decision.ninetailed_bucketing import (
    distribution_random,
    select_arm,
)
from personalization.types import EXPOSURE_DECODER
from tests.content.test_ninetailed_flags import LAYOUT, flag_space

HOME = "https://example.com/"
HERO = "4aSQ6HYCrSQP2UktnEGq3X"


@pytest.fixture
def client(settings: Settings, export: dict[str, Any], tmp_path: Path) -> Iterator[TestClient]:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    with TestClient(create_app(msgspec.structs.replace(settings, content_source=str(path)))) as client:
        yield client


@pytest.fixture(scope="module")
def export() -> dict[str, Any]:
    return flag_space()


def _baseline(export: dict[str, Any]) -> str:
    return next(e["sys"]["id"] for e in export["entries"] if e["fields"].get("nt_experiences"))


def test_flags_come_back_as_ninetailed_changes(
    client: TestClient, export: dict[str, Any], delivery: dict[str, str]
) -> None:
    entry_id = _baseline(export)
    values = {0: {"layout": "one-column"}, 1: LAYOUT}
    seen = set()
    for i in range(12):
        visitor = {"id": f"flag-visitor-{i}", "country": "DE", "page": HOME}  # not in North America
        body = {"visitor": visitor, "entries": [entry_id], "flags": True}
        response = client.post("/v1/personalize", json=body, headers=delivery)
        assert response.status_code == 200, response.text
        data = response.json()
        assert [e["entry_id"] for e in data["entries"]] == [entry_id]  # flag experiences are not entries
        arm = select_arm(distribution_random("ntFlagLayout", visitor["id"]), (0.5, 0.5))
        assert data["changes"] == [{
            "key": "ticketing-layout", "type": "Variable", "value": values[arm],
            "meta": {"experienceId": "ntFlagLayout", "variantIndex": arm}, "exposure_token": None,
        }]  # fmt: skip
        seen.add(arm)
    assert seen == {0, 1}
    # without "flags", nothing is decided for them
    plain = client.post("/v1/personalize", json={"visitor": {"id": "flag-visitor-0"}, "entries": [entry_id]},
                        headers=delivery).json()  # fmt: skip
    assert plain["changes"] == []


def test_an_audience_flag_reaches_its_audience_only_and_logs_one_exposure(
    client: TestClient, export: dict[str, Any], delivery: dict[str, str], sync_redis: Any
) -> None:
    entry_id = _baseline(export)
    keys = []
    for i in range(30):
        visitor = {"id": f"na-{i}", "country": "US", "page": HOME}
        data = client.post("/v1/personalize", json={"visitor": visitor, "entries": [entry_id], "flags": True},
                           headers=delivery).json()  # fmt: skip
        keys.append(sorted(c["key"] for c in data["changes"]))
        for change in data["changes"]:
            if change["key"] == "banner-copy":
                arm = change["meta"]["variantIndex"]
                assert change["value"] == ("Welcome", "Howdy", "Hi there")[arm]
    # traffic 0.8: most North Americans get the banner flag, some not; everybody the layout flag
    assert all("ticketing-layout" in k for k in keys)
    assert 0 < sum("banner-copy" in k for k in keys) < 30
    deadline = time.monotonic() + 5
    logged = []
    while time.monotonic() < deadline:
        logged = [EXPOSURE_DECODER.decode(f["data"]) for _, f in sync_redis.xrange("vary:exposures")]
        if sum(x.entry_id == "ntFlagLayout" for x in logged) >= 30:
            break
        time.sleep(0.02)
    assert sum(x.entry_id == "ntFlagLayout" and x.experience == "ntFlagLayout" for x in logged) == 30


def test_on_view_flags_carry_exposure_tokens(
    client: TestClient, export: dict[str, Any], delivery: dict[str, str]
) -> None:
    body = {"visitor": {"id": "on-view", "country": "US", "page": HOME}, "entries": [_baseline(export)],
            "flags": True, "exposures": "on_view"}  # fmt: skip
    data = client.post("/v1/personalize", json=body, headers=delivery).json()
    tokens = [c["exposure_token"] for c in data["changes"]]
    assert tokens and all(tokens)
    accepted = client.post("/v1/exposures", json={"tokens": tokens[:1]}, headers=delivery)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["accepted"] == 1

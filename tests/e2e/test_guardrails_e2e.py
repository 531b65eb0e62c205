"""End to end: a planted CSAT harm → the real server's guardrail pauses the variant → resume (issue #18).

The demo space's ``banner-shipping-test`` lists ``csat`` and ``task_success`` as guardrails. The real
``vary serve`` runs with ``VARY_GUARDRAIL_CHECK_S=1`` against the session Valkey;
:func:`personalization.demo.simulation.simulate` drives seeded visitors through its HTTP API with harm
planted in variant 2: 60 % of its visitors' CSAT answers turn to 1–2
(:mod:`personalization.demo.harm`).

Sizing. The monitor tests each (variant, guardrail) pair once both arms have 200 CSAT answers
(``DEFAULT_MIN_SAMPLE``), at α/4 (two variants × two guardrails) with the always-valid interval. The
simulator's site CSAT pop-up is raised from 15 % to 60 % of visitors so 2,500 visitors give each arm
≈ 2,500 × 0.98 (consent) × 0.95 (global holdout) × 0.95 (experience holdout) × 0.33 × 0.6 ≈ 440
answers. Variant 2's share of 4–5 answers falls from ≈ 0.8 to ≈ 0.3 against the control's ≈ 0.7: a
difference of ≈ −40 points against an always-valid half-width of ≈ 15–20 points at 200 answers per
arm, so harm is established as soon as the minimum sample is reached — well inside the run. The run is
seeded and assignment is a hash of the visitor id, so the counts are the same every time.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from personalization.demo.harm import Harm
from personalization.demo.simulation import SHIPPING_TEST, Effects, SimulationSummary, simulate
from tests.e2e.servers import VaryProcess, running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DELIVERY = "e2e-guardrail-delivery"
ADMIN = "e2e-guardrail-admin"
VISITORS = 2500
SEED = 18
HARMED_VARIANT = 2
EFFECTS = Effects(site_csat_rate=0.6, harms=(Harm("csat", SHIPPING_TEST, HARMED_VARIANT, 0.6),))


@pytest.fixture
def server(redis_url: str, model_dir: Path, tmp_path: Path) -> Iterator[VaryProcess]:
    data_dir = tmp_path / "data"
    shutil.copytree(model_dir / "models", data_dir / "models")  # the session's demo model: no training here
    env = {"VARY_REDIS_URL": redis_url, "VARY_DELIVERY_KEYS": DELIVERY, "VARY_ADMIN_KEYS": ADMIN,
           "VARY_GUARDRAIL_CHECK_S": "1"}
    with running(env, data_dir) as process:
        yield process


def _experience(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/v1/experiences", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200, response.text
    return next(x for x in response.json()["experiences"] if x["key"] == SHIPPING_TEST)


def _banner(http: httpx.Client, visitor: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/v1/personalize", json={"visitor": visitor, "entries": ["bannerShipping"]},
                         headers={"Authorization": f"Bearer {DELIVERY}"})
    assert response.status_code == 200, response.text
    [entry] = response.json()["entries"]
    return entry  # type: ignore[no-any-return]


def _in_harmed_arm(http: httpx.Client) -> dict[str, Any]:
    """A new visitor the shipping banner assigns the harmed variant (assignment is kept while paused)."""
    for n in range(200):
        visitor = {"id": f"e2e-guardrail-probe-{n}", "consent": {"personalization": True, "analytics": True}}
        entry = _banner(http, visitor)
        if entry.get("experience") == SHIPPING_TEST and entry["variant"] == HARMED_VARIANT and not entry["holdout"]:
            return visitor
    raise AssertionError("no probe visitor was assigned the harmed variant")


def _served_until(http: httpx.Client, visitor: dict[str, Any], entry_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The visitor's banner decision once it serves ``entry_id``: a pause or a resume reaches every
    worker within ``VARY_STATE_REFRESH_S`` (2 s by default); 30 s allows a loaded 2-core CI machine (a
    10 s wait failed once there while the pause was on its way)."""
    deadline = time.monotonic() + timeout
    entry = _banner(http, visitor)
    while entry["variant_entry_id"] != entry_id:
        assert time.monotonic() < deadline, entry
        time.sleep(0.25)
        entry = _banner(http, visitor)
    return entry


def test_a_planted_csat_harm_pauses_the_variant_and_resume_lifts_it(server: VaryProcess) -> None:
    started = time.monotonic()
    summary: SimulationSummary = asyncio.run(
        simulate(server.base, DELIVERY, VISITORS, seed=SEED, concurrency=4, effects=EFFECTS)
    )
    assert summary.errors == 0, summary.error_samples
    simulated_s = time.monotonic() - started

    with httpx.Client(base_url=server.base, timeout=10.0) as http:
        deadline = time.monotonic() + 30.0
        experience = _experience(http)
        while experience["status"] != "paused_by_guardrail":
            assert time.monotonic() < deadline, (experience, simulated_s, server.output())
            time.sleep(0.5)
            experience = _experience(http)
        # Only the harmed variant is paused, by the CSAT guardrail, and the reason says so.
        assert set(experience["paused"]) == {str(HARMED_VARIANT)}, experience
        reason = experience["paused"][str(HARMED_VARIANT)]
        assert "csat" in reason, reason  # the metric, its estimate and interval, the answers counted

        # A visitor in that arm gets the baseline entry, with the reason; the exposure keeps the variant.
        probe = _in_harmed_arm(http)
        entry = _served_until(http, probe, "bannerShipping")
        assert entry["variant"] == HARMED_VARIANT and not entry["holdout"], entry
        assert entry["reason"].startswith("paused: guardrail csat"), entry

        # Resume: the variant is served again and stays resumed (not re-paused by the same guardrail).
        response = http.post(f"/v1/experiences/{SHIPPING_TEST}/resume", headers={"Authorization": f"Bearer {ADMIN}"})
        assert response.status_code == 200, response.text
        assert response.json()["resumed"] == [HARMED_VARIANT]
        again = _served_until(http, probe, "bannerShippingFast")
        assert again["variant"] == HARMED_VARIANT and not again["reason"].startswith("paused"), again
        time.sleep(2.5)  # two more monitor rounds: the same guardrail does not pause it again
        experience = _experience(http)
        assert experience["status"] == "running" and experience["paused"] == {}, experience
        # Nothing left to resume: 409.
        response = http.post(f"/v1/experiences/{SHIPPING_TEST}/resume", headers={"Authorization": f"Bearer {ADMIN}"})
        assert response.status_code == 409, response.text
    print(f"\n{VISITORS} visitors in {simulated_s:.1f} s; paused, probed and resumed in "
          f"{time.monotonic() - started:.1f} s; {summary.paused_shown} decisions showed the paused baseline")

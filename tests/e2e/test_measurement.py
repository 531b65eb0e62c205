"""End to end: simulated traffic with a planted effect → the real server → results find the effect.

The real ``vary serve`` process runs against the session Valkey (``VARY_REDIS_URL``), so this test
can also read the streams. :func:`personalization.demo.simulation.simulate` drives seeded visitors
through its HTTP API (personalize + events), the server's in-process aggregator counts them, and
``GET /v1/experiences/banner-shipping-test/results`` must show the planted effect where it was
planted: variant 1 among price-sensitive visitors, on the ``purchase`` goal.

Effect size. The simulator's default is the issue's +20 %; finding that needs ~2,000 visitors per
arm *in the segment* (tests/personalization/measurement/test_effect_detection.py checks the 20 % case at the
aggregation level, where 10⁵ visitors cost nothing). Through HTTP on two cores this run affords
about 2,000 visitors in all (≈ 150 visitors per arm whom the model scores price-sensitive), so the
e2e plants a larger effect: control purchase rate 25 % for price-sensitive visitors, variant 1
doubles it (+100 %). Expected z ≈ 0.25 / √((0.25·0.75 + 0.5·0.5)/150) ≈ 4.6: detection at α = 0.05
with power > 0.99 (seeds 1, 2, 3 gave p ≈ 3e-6, 5e-6, 1e-8). The run is seeded and assignment is a
hash of the visitor id, so a given seed always gives the same counts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.dataset as ds
import pytest
import redis

from personalization.demo.simulation import SHIPPING_TEST, Effects, SimulationSummary, simulate
from tests.e2e.servers import VaryProcess, aggregation_settled, running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DELIVERY = "e2e-measure-delivery"
ADMIN = "e2e-measure-admin"
VISITORS = 2000
SEED = 7
EFFECTS = Effects(price_sensitive_purchase_rate=0.25, shipping_lift=1.0)


@pytest.fixture
def server(redis_url: str, model_dir: Path, tmp_path: Path) -> Iterator[VaryProcess]:
    data_dir = tmp_path / "data"
    shutil.copytree(model_dir / "models", data_dir / "models")  # the session's demo model: no training here
    env = {"VARY_REDIS_URL": redis_url, "VARY_DELIVERY_KEYS": DELIVERY, "VARY_ADMIN_KEYS": ADMIN}
    with running(env, data_dir) as process:
        yield process


def _results(http: httpx.Client, store: redis.Redis, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the results until exposures stop growing and the aggregator has nothing left in hand."""
    deadline = time.monotonic() + timeout
    previous: list[int] | None = None
    while True:
        response = http.get(f"/v1/experiences/{SHIPPING_TEST}/results", headers={"Authorization": f"Bearer {ADMIN}"})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["exposures"] == previous and aggregation_settled(store):
            return body
        assert time.monotonic() < deadline, f"aggregates still moving: {body['exposures']}"
        previous = body["exposures"]
        time.sleep(1.0)


def test_simulated_effect_is_found_and_export_matches_the_streams(
    server: VaryProcess, redis_url: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    summary: SimulationSummary = asyncio.run(
        simulate(server.base, DELIVERY, VISITORS, seed=SEED, concurrency=4, effects=EFFECTS)
    )
    assert summary.errors == 0, summary.error_samples
    assert summary.visitors == VISITORS and summary.rejected == 0 and summary.accepted > 0
    assert summary.dropped > 0  # visitors without analytics consent: acknowledged, not stored
    simulated_s = time.monotonic() - started

    store = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with httpx.Client(base_url=server.base, timeout=10) as http:
            results = _results(http, store)

        # The planted effect, where it was planted.
        segment = results["breakdowns"]["segment"]["price_sensitive"]["purchase"]["variants"]
        control, treated = segment[0], segment[1]
        assert treated["variant"] == 1
        assert treated["p_value"] is not None and treated["p_value"] < 0.05, (segment, simulated_s)
        low, high = treated["uplift_interval"]
        assert low > 0, (treated, control)
        assert treated["rate"] > control["rate"]
        # Randomisation held: no sample-ratio mismatch across control / free / fast.
        assert results["srm_p_value"] is not None and results["srm_flag"] is False, results["visitors"]
        assert results["holdout_visitors"] > 0 and results["anonymous_exposures"] > 0
        # The rest of the journey reached the UX and CX metrics.
        assert {"home", "checkout", "search"} <= set(results["ux"])
        checkout = results["ux"]["checkout"]["0"]
        assert checkout["task_success"]["n"] > 0 and checkout["task_time"]["median"] is not None
        assert checkout["abandonment_rate"]["n"] > 0 and checkout["average_order_value"]["n"] > 0
        cx = results["cx"]["0"]
        assert cx["nps"]["n"] > 0 and cx["csat"]["n"] > 0 and cx["ces"]["n"] > 0
        assert cx["repeat_purchase_rate"]["n"] > 0

        print(
            f"\n{VISITORS} visitors in {simulated_s:.1f} s; price-sensitive purchase: control "
            f"{control['conversions']}/{control['exposures']}, variant 1 {treated['conversions']}/"
            f"{treated['exposures']}, p = {treated['p_value']:.2g}, uplift {treated['uplift']:.2f} "
            f"[{low:.2f}, {high:.2f}], SRM p = {results['srm_p_value']:.2f}"
        )

        # `vary export` on the same Redis: every exposure and event in the streams, once.
        exposures_in_stream, events_in_stream = store.xlen("vary:exposures"), store.xlen("vary:events")
    finally:
        store.close()
    today = datetime.now(UTC).date()
    out = tmp_path / "export"
    vary = Path(sys.executable).with_name("vary")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VARY_")}
    env.update({"VARY_REDIS_URL": redis_url, "VARY_DATA_DIR": str(tmp_path / "data")})
    done = subprocess.run(
        [str(vary), "export", "--since", str(today - timedelta(days=1)), "--until", str(today + timedelta(days=1)),
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    exposures = ds.dataset(out / "exposures", format="parquet", partitioning="hive").to_table()
    events = ds.dataset(out / "events", format="parquet", partitioning="hive").to_table()
    assert exposures.num_rows == exposures_in_stream
    assert events.num_rows == events_in_stream
    assert len(set(exposures.column("id").to_pylist())) == exposures_in_stream
    assert {"date", "segments", "experience", "variant"} <= set(exposures.column_names)
    assert set(events.column("type").to_pylist()) >= {"page_view", "purchase", "task", "survey", "conversion"}

"""Multiprocess mode: what two worker processes counted is summed in one scrape, the directory is
emptied at start, and the variable does not outlive ``vary serve``'s block."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from api.metrics import MULTIPROC_VARIABLE, multiprocess_dir

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
from api.metrics import EXPOSURES, EXPOSURES_PENDING, REQUEST_SECONDS
EXPOSURES.labels("written").inc({n})
EXPOSURES_PENDING.set({n})
REQUEST_SECONDS.labels("POST", "/v1/personalize", "200").observe(0.004)
"""

SCRAPE = """
import sys
from api.metrics import exposition
sys.stdout.write(exposition().decode())
"""


def _python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_two_workers_are_summed_in_one_scrape(tmp_path: Path) -> None:
    stale = tmp_path / "metrics" / "counter_99999.db"
    stale.parent.mkdir()
    stale.write_bytes(b"left by an earlier run")
    assert MULTIPROC_VARIABLE not in os.environ
    with multiprocess_dir(tmp_path) as path:
        assert path == tmp_path / "metrics" and not stale.exists()
        env = {**os.environ}
        assert env[MULTIPROC_VARIABLE] == str(path)
        _python(WORKER.format(n=3), env)
        _python(WORKER.format(n=4), env)
        text = _python(SCRAPE, env)
    assert MULTIPROC_VARIABLE not in os.environ
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("vary_exposures_total", (("outcome", "written"),))] == 7
    assert samples[("vary_exposures_pending", ())] == 7  # livesum over the (exited but unmarked) workers
    route = (("method", "POST"), ("route", "/v1/personalize"), ("status", "200"))
    assert samples[("vary_http_request_duration_seconds_count", route)] == 2


LAGGING_WORKER = """
import os
from api.metrics import EVENT_LOOP_LAG
EVENT_LOOP_LAG.labels("p99").set({lag})
print(os.getpid())
"""


def test_each_worker_keeps_its_own_loop_lag_until_it_exits(tmp_path: Path) -> None:
    """Loop lag is one worker's stall: two workers give two series (a ``pid`` label), not a sum, and
    a worker marked exited drops out."""
    with multiprocess_dir(tmp_path) as path:
        env = {**os.environ}
        calm = _python(LAGGING_WORKER.format(lag=0.002), env).strip()
        stalled = _python(LAGGING_WORKER.format(lag=0.4), env).strip()
        samples = {
            s.labels["pid"]: s.value
            for family in text_string_to_metric_families(_python(SCRAPE, env))
            for s in family.samples
            if s.name == "vary_event_loop_lag_seconds" and s.labels["stat"] == "p99"
        }
        assert samples == {calm: 0.002, stalled: 0.4}
        _python(f"from prometheus_client import multiprocess; multiprocess.mark_process_dead({stalled})", env)
        left = {
            s.labels["pid"]
            for family in text_string_to_metric_families(_python(SCRAPE, env))
            for s in family.samples
            if s.name == "vary_event_loop_lag_seconds"
        }
        assert left == {calm} and path.is_dir()

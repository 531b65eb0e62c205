"""A worker that is slow to start is waited for, not killed over and over.

With ``--workers`` > 1, uvicorn's supervisor pings each worker and replaces one that does not answer
within ``timeout_worker_healthcheck`` — 5 s by default, counted from the worker's spawn, before
the worker has imported anything or started its answering thread. On a loaded machine a worker took
longer than that to start, so each replacement was killed in turn and ``vary serve`` never became
ready (seen with three busy processes on two cores: "Child process … died" every 5 s).

The slow start is caused for real: a ``sitecustomize`` module on the workers' path sleeps before
the interpreter runs anything else, in spawned worker processes only (``--multiprocessing-fork`` on
their command line), as a loaded machine's slow imports would.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from api.cli.serve import WORKER_HEALTHCHECK_S
from tests.e2e.servers import running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Longer than uvicorn's own 5 s health-check timeout, well inside Vary's.
SLOW_START_S = 8.0

SITECUSTOMIZE = f"""
import sys, time
if "--multiprocessing-fork" in sys.orig_argv:
    time.sleep({SLOW_START_S})
"""


def test_workers_slow_to_start_are_waited_for(redis_url: str, model_dir: Path, tmp_path: Path) -> None:
    assert SLOW_START_S < WORKER_HEALTHCHECK_S
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    data_dir = tmp_path / "data"
    shutil.copytree(model_dir / "models", data_dir / "models")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {"VARY_REDIS_URL": redis_url, "VARY_WORKERS": "2", "PYTHONPATH": path}
    started = time.monotonic()
    with running(env, data_dir) as server:
        ready_s = time.monotonic() - started
        deadline = time.monotonic() + 2 * WORKER_HEALTHCHECK_S
        while "".join(server.log).count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        # Both workers came up once each: none was killed and replaced while it started.
        log = "".join(server.log)
        assert "died" not in log, log
        assert log.count("Application startup complete") == 2, log
        assert httpx.get(f"{server.base}/ready", timeout=5).status_code == 200
    assert ready_s >= SLOW_START_S, f"the workers did not start slowly ({ready_s:.1f} s): the test tests nothing"

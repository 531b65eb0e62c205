"""``vary train``, ``vary models`` and ``vary evaluate`` run in-process against the real Valkey server."""

from __future__ import annotations

import csv
import random
import time
from pathlib import Path

import pytest
import redis

from api.cli.main import main
from personalization.demo.data import DEMO_CSV
from personalization.measurement.events import Conversion
from personalization.types import new_exposure_id
from personalization.models.ope import read_action_probabilities
from personalization.types import Exposure
from tests.api.logs import store_logs

DAY = 86_400.0


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> Path:
    """VARY_DATA_DIR = a fresh directory, VARY_REDIS_URL = the test server; returns the data dir."""
    for name in ("VARY_CONTENT_SOURCE", "VARY_TRAIN_DEMO_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VARY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VARY_REDIS_URL", redis_url)
    return tmp_path / "data"


def _version(output: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith("trained "))
    return line.split()[1].rstrip(":")


def _active(redis_url: str) -> dict[str, str]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return client.hgetall("vary:models:active")
    finally:
        client.close()


def _bandit_csv(path: Path, n: int = 400, seed: int = 1) -> Path:
    """Logged-bandit feedback from a uniform logging policy: variant 2 wins on ios, 1 on the web."""
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ts", "channel", "score", "action", "propensity", "reward"])
        for i in range(n):
            channel = rng.choice(["web", "ios"])
            action = rng.randrange(3)
            best = 2 if channel == "ios" else 1
            p = 0.5 if action == best else 0.1
            writer.writerow([1_700_000_000 + i, channel, f"{rng.random():.3f}", action, f"{1 / 3:.6f}", int(rng.random() < p)])
    return path


def test_train_without_target_trains_the_demo_model_and_registers_it(
    env: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train"]) == 0
    out = capsys.readouterr().out
    version = _version(out)
    assert version.startswith("seg-") and "the bundled demo data" in out
    assert (env / "models" / f"{version}.skops").exists()
    assert (env / "models" / "active").read_text().strip() == version
    assert "registered and activated" in out
    assert _active(redis_url)["segments"] == version


def test_train_segments_from_csv_and_show_the_card(
    env: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "segments", "--data", str(DEMO_CSV), "--random-state", "3", "--no-activate"]) == 0
    out = capsys.readouterr().out
    version = _version(out)
    assert "not activated" in out and "registered (not activated)" in out
    assert not (env / "models" / "active").exists()
    assert "segments" not in _active(redis_url)

    assert main(["models", "show", version]) == 0
    card = capsys.readouterr().out
    assert version in card and "segment model" in card
    assert "roc_auc" in card and "log_loss" in card and "brier" in card
    assert "calibration: price_sensitive" in card and "predicted" in card and "observed" in card
    assert "rows" in card and "train 3,200" in card and "window" in card

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert listing.count(version) == 2  # local and registered

    assert main(["models", "show", "seg-nope"]) == 1
    assert "no model 'seg-nope'" in capsys.readouterr().err


def test_show_reads_the_registry_when_the_model_is_not_local(
    env: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train"]) == 0
    version = _version(capsys.readouterr().out)
    monkeypatch.setenv("VARY_DATA_DIR", str(tmp_path / "elsewhere"))
    assert main(["models", "show", version]) == 0
    out = capsys.readouterr().out
    assert "roc_auc" in out and "in the model registry (segments) (active)" in out


def test_without_redis_url_models_stay_local_and_log_commands_say_why(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VARY_REDIS_URL")
    assert main(["train"]) == 0
    out = capsys.readouterr().out
    assert "VARY_REDIS_URL is not set" in out and "POST /v1/models" in out
    assert main(["train", "segments", "--from-events", "--goal", "purchase"]) == 2
    assert "VARY_REDIS_URL is not set" in capsys.readouterr().err
    assert main(["train", "segments", "--from-events"]) == 2
    assert "--goal" in capsys.readouterr().err


def _write_visitors(redis_url: str, n: int = 300) -> None:
    """First exposures 20-10 days ago; ios visitors mostly purchase within a week, web ones rarely."""
    rng = random.Random(5)
    base = time.time() - 20 * DAY

    exposures, events = [], []
    for i in range(n):
        ts = base + i * (10 * DAY / n)
        channel = "ios" if i % 2 else "web"
        exposures.append(
            Exposure(
                id=new_exposure_id(), ts=ts, visitor_id=f"v{i}", session_id=None, channel=channel,
                entry_id="hero", variant_entry_id="hero", experience=None, variant=0, is_control=True,
                holdout=False, propensity=1.0, country=rng.choice(["US", "DE"]), device="mobile",
            )
        )
        if rng.random() < (0.7 if channel == "ios" else 0.15):
            events.append(Conversion(visitor_id=f"v{i}", goal="purchase", ts=ts + rng.uniform(0, 6) * DAY))
    store_logs(redis_url, exposures, events)


def test_train_segments_from_events(env: Path, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _write_visitors(redis_url)
    code = main(["train", "segments", "--from-events", "--goal", "purchase", "--days", "7"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    version = _version(captured.out)
    assert "converted_purchase" in captured.out and "300 rows" in captured.out
    assert _active(redis_url)["segments"] == version
    assert main(["models", "show", version]) == 0
    card = capsys.readouterr().out
    assert "converted_purchase" in card and "features      channel, device, country" in card


def test_train_policy_from_a_file_and_evaluate_it(
    env: Path, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _bandit_csv(tmp_path / "logged.csv")
    assert main(["train", "policy", "--data", str(data)]) == 2
    assert "--experience" in capsys.readouterr().err

    code = main(["train", "policy", "--data", str(data), "--experience", "banner-bandit"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    version = _version(captured.out)
    assert version.startswith("pol-") and "3 variants, read from the file" in captured.out
    assert (env / "policies" / "banner-bandit" / f"{version}.skops").exists()
    assert _active(redis_url)["policy:banner-bandit"] == version

    assert main(["models", "show", version]) == 0
    card = capsys.readouterr().out
    assert "bandit policy" in card and "banner-bandit" in card and "score" in card and "ts" not in card.split("features")[1].split("\n")[0]

    out = tmp_path / "probabilities.csv"
    code = main(["evaluate", "--data", str(data), "--model", version, "--out", str(out), "--bootstrap", "100"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    table = captured.out
    for name in ("IPS", "SNIPS", "DR", "logged policy", "95% interval", "ESS"):
        assert name in table
    probabilities = read_action_probabilities(out)
    assert probabilities.shape == (400, 3)
    assert abs(probabilities.sum(axis=1) - 1).max() < 1e-9

    clipped = main(["evaluate", "--data", str(data), "--model", version, "--bootstrap", "50", "--clip", "1.5"])
    assert clipped == 0 and "clipped at 1.5" in capsys.readouterr().out


def test_evaluate_refuses_segment_models_and_unknown_versions(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train"]) == 0
    version = _version(capsys.readouterr().out)
    data = _bandit_csv(tmp_path / "logged.csv", n=50)
    assert main(["evaluate", "--data", str(data), "--model", version]) == 2
    assert "only bandit policies" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(data), "--model", "pol-nope"]) == 1
    assert "no model 'pol-nope'" in capsys.readouterr().err


def test_train_policy_from_the_logs_and_evaluate_on_them(
    env: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.api.http.test_evaluate_route import _log_traffic

    # The demo space's shipping banner is an A/B test: its uniform logs can train a policy before
    # it is switched to a bandit (the command says so).
    assert main(["train", "policy", "--experience", "banner-shipping-test"]) == 1
    assert "no logged decisions" in capsys.readouterr().err
    _log_traffic(redis_url, n=300)
    code = main(["train", "policy", "--experience", "banner-shipping-test"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "is of type ab_test" in captured.out and "300 decisions from the logs" in captured.out
    version = _version(captured.out)
    assert _active(redis_url)["policy:banner-shipping-test"] == version

    code = main(["evaluate", "--model", version, "--bootstrap", "100"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "300 logged decisions from the logs of experience 'banner-shipping-test'" in captured.out
    assert "DR" in captured.out and "ESS" in captured.out

    assert main(["train", "policy", "--experience", "no-such-experience"]) == 2
    assert "not in the content" in capsys.readouterr().err


def test_training_and_evaluating_from_parquet(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pyarrow is a dependency: Parquet training files work like CSV, and a broken one is a clear error."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from personalization.demo.data import DEMO_CSV

    pq.write_table(pacsv.read_csv(DEMO_CSV), tmp_path / "train.parquet")
    assert main(["train", "segments", "--data", str(tmp_path / "train.parquet"), "--no-activate"]) == 0
    out = capsys.readouterr().out
    assert "price_sensitive: roc_auc" in out and "4,000 rows" in out
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    assert main(["train", "segments", "--data", str(tmp_path / "data.parquet")]) == 2
    assert "data.parquet" in capsys.readouterr().err
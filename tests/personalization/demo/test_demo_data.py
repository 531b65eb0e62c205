"""The simulated visitors, the training CSV format, the bundled CSV, and the demo model."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from personalization.demo.data import (
    CATEGORICAL_FEATURES,
    DEMO_CSV,
    DEMO_SEGMENTS,
    generate_demo_training_data,
    read_training_csv,
    train_demo_model,
    write_demo_csv,
    write_training_csv,
)
from personalization.decision.features import FEATURE_NAMES
from personalization.models.segment_model import compile_model, load_model


def test_generation_is_seeded() -> None:
    first = generate_demo_training_data(n=200, seed=11)
    assert generate_demo_training_data(n=200, seed=11) == first
    assert generate_demo_training_data(n=200, seed=12) != first


def test_rows_look_like_build_features_output() -> None:
    rows, labels, timestamps = generate_demo_training_data(n=1000)
    assert len(rows) == len(timestamps) == 1000
    assert timestamps == sorted(timestamps)
    assert list(labels) == list(DEMO_SEGMENTS)
    for row in rows:
        assert set(row) <= set(FEATURE_NAMES)
        for name, value in row.items():
            assert isinstance(value, str) if name in CATEGORICAL_FEATURES else isinstance(value, float)
    seen = {name: {row.get(name) for row in rows} for name in ("channel", "device", "country")}
    assert seen["channel"] == {"web", "ios", "android", "email"}
    assert {"desktop", "mobile", "tablet"} <= seen["device"]
    assert {"US", "CA", "DE", "GB", "FR", "JP"} <= seen["country"]
    assert {"google.com", "facebook.com"} <= {row.get("referrer_domain") for row in rows}
    assert {"sale", "brand"} <= {row.get("utm_campaign") for row in rows}
    for name, values in labels.items():
        assert set(values) == {0, 1}
        assert 0.05 < sum(values) / len(values) < 0.6, name


def test_csv_round_trip(tmp_path: Path) -> None:
    rows, labels, timestamps = generate_demo_training_data(n=500, seed=21)
    path = tmp_path / "training.csv"
    write_training_csv(path, rows, labels, timestamps)
    assert read_training_csv(path) == (rows, labels, timestamps)
    assert path.read_text().splitlines()[0].split(",")[:2] == ["ts", "channel"]


def test_csv_round_trip_without_timestamps_and_with_extra_features(tmp_path: Path) -> None:
    rows = [{"channel": "web", "visits": 2.0, "trait_score": 0.25}, {"channel": "ios", "country": "JP"}]
    labels = {"loyal": [1, 0]}
    path = tmp_path / "t.csv"
    write_training_csv(path, rows, labels, None)
    assert read_training_csv(path) == (rows, labels, None)


def test_read_training_csv_names_the_bad_cell(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("ts,channel,visits,segment:loyal\n1,web,3,1\n2,web,many,0\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: column 'visits'")):
        read_training_csv(path)
    path.write_text("ts,channel,segment:loyal\n1,web,yes\n")
    with pytest.raises(ValueError, match="column 'segment:loyal'"):
        read_training_csv(path)


def test_bundled_csv_is_what_the_generator_writes(tmp_path: Path) -> None:
    assert DEMO_CSV.stat().st_size < 600_000
    fresh = write_demo_csv(tmp_path / "training.csv")
    assert fresh.read_bytes() == DEMO_CSV.read_bytes()
    rows, labels, timestamps = read_training_csv(DEMO_CSV)
    assert len(rows) == 4000
    assert (rows, labels, timestamps) == generate_demo_training_data()


def test_demo_model(tmp_path: Path) -> None:
    started = time.perf_counter()
    card = train_demo_model(tmp_path)
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0
    assert re.fullmatch(r"seg-\d{14}-[0-9a-f]{8}", card.version)
    assert card.segments == DEMO_SEGMENTS
    assert card.rows == {"train": 3200, "validation": 800}
    assert card.training_window is not None
    assert set(card.features) == set(FEATURE_NAMES)
    for segment in DEMO_SEGMENTS:
        assert card.metrics[segment]["roc_auc"] > 0.7, (segment, card.metrics[segment])
        assert 0 < card.metrics[segment]["brier"] < 0.25
        assert card.calibration[segment]

    pipeline, loaded = load_model(tmp_path)
    assert loaded == card
    model = compile_model(pipeline, loaded)
    coupon = {"channel": "web", "device": "mobile", "referrer_domain": "retailmenot.com",
              "utm_campaign": "sale", "visits": 1.0, "log_page_views": 0.7, "conversions": 0.0,
              "channels_used": 1.0, "is_new": 0.0, "days_since_first_seen": 3.0}
    loyal = {"channel": "email", "device": "desktop", "utm_campaign": "loyalty", "visits": 40.0,
             "log_page_views": 5.0, "conversions": 8.0, "channels_used": 3.0, "is_new": 0.0,
             "days_since_first_seen": 400.0}
    assert model.score(coupon)["price_sensitive"] > model.score(loyal)["price_sensitive"]
    assert model.score(loyal)["loyal"] > model.score(coupon)["loyal"]

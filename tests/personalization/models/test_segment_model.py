"""The segment model: training and its card, skops storage with a fixed trust list, the compiled path."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import pytest
import sklearn
import skops.io
from sklearn.pipeline import Pipeline

from personalization.models import segment_model
from personalization.demo.data import generate_demo_training_data
from personalization.decision.features import build_features
from personalization.models.segment_model import (
    TRUSTED_TYPES,
    ModelCard,
    ModelLoadError,
    ModelVersionMismatch,
    UntrustedModelError,
    compile_model,
    load_model,
    save_model,
    train_segment_model,
)
from personalization import seams
from personalization.decision import segments
from personalization.decision.segments import CompiledSegmentModel
from personalization.seams import SegmentModel
from personalization.types import Profile, Visitor
from tests.personalization.models.skops_files import dump_with_untrusted_step, schema_types

CREATED_AT = 1_748_736_000.0  # 2025-06-01T00:00:00Z
VERSION = re.compile(r"^seg-\d{14}-[0-9a-f]{8}$")


@pytest.fixture(scope="module")
def trained() -> tuple[Pipeline, ModelCard]:
    rows, labels, timestamps = generate_demo_training_data()
    return train_segment_model(rows, labels, timestamps, created_at=CREATED_AT)


@pytest.fixture(scope="module")
def compiled(trained: tuple[Pipeline, ModelCard]) -> CompiledSegmentModel:
    return compile_model(*trained)


def positive_columns(pipeline: Pipeline, rows: list[dict[str, float | str]]) -> np.ndarray:
    """``predict_proba``'s P(label = 1) per output, as a (rows, segments) array."""
    return np.column_stack([p[:, 1] for p in pipeline.predict_proba(rows)])


def scoring_rows() -> list[dict[str, float | str]]:
    """1,000 visitors from another seed, a quarter with unseen categories, a quarter near-empty."""
    rows, _, _ = generate_demo_training_data(n=1000, seed=12345)
    rng = random.Random(3)
    out: list[dict[str, float | str]] = []
    for i, row in enumerate(rows):
        row = dict(row)
        if i % 4 == 0:
            row.update(country="ZZ", channel="kiosk", device="watch", utm_term="never-seen")
        elif i % 4 == 1:
            row = {"channel": rng.choice(["web", "ios", "kiosk"])}
        elif i % 8 == 2:
            row["trait_vip"] = 1.0  # a feature the model was not trained on
        out.append(row)
    out.append({})
    out.append(build_features(Visitor(id="only-an-id"), Profile(), now=CREATED_AT))
    return out


# -- the compiled path ------------------------------------------------------------------------------


def test_compiled_scores_equal_predict_proba(
    trained: tuple[Pipeline, ModelCard], compiled: CompiledSegmentModel
) -> None:
    pipeline, card = trained
    rows = scoring_rows()
    expected = positive_columns(pipeline, rows)
    got = np.array([[compiled.score(row)[s] for s in card.segments] for row in rows])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_compiled_score_is_stable_for_extreme_inputs(
    trained: tuple[Pipeline, ModelCard], compiled: CompiledSegmentModel
) -> None:
    pipeline, _ = trained
    rows: list[dict[str, float | str]] = [
        {"channel": "web", "visits": 1e9, "log_page_views": 1e9, "conversions": 1e9},
        {"channel": "web", "visits": -1e9, "log_page_views": -1e9, "conversions": -1e9},
    ]
    expected = positive_columns(pipeline, rows)
    for row, want in zip(rows, expected):
        scores = compiled.score(row)
        assert all(0.0 <= p <= 1.0 for p in scores.values())
        np.testing.assert_allclose(list(scores.values()), want, rtol=0, atol=1e-9)


def test_compiled_model_is_a_segment_model(
    trained: tuple[Pipeline, ModelCard], compiled: CompiledSegmentModel
) -> None:
    _, card = trained
    assert isinstance(compiled, SegmentModel)
    assert compiled.version == card.version
    assert compiled.segments == ("price_sensitive", "high_intent", "loyal")
    assert compiled.card is card
    assert list(compiled.score({"channel": "web"})) == list(card.segments)


# -- training and the card --------------------------------------------------------------------------


def test_card_describes_the_model(trained: tuple[Pipeline, ModelCard]) -> None:
    _, card = trained
    assert VERSION.match(card.version)
    assert card.version.startswith("seg-20250601000000-")
    assert card.created_at == CREATED_AT
    assert card.sklearn_version == sklearn.__version__
    assert card.segments == ("price_sensitive", "high_intent", "loyal")
    assert {"channel", "country", "visits", "log_page_views"} <= set(card.features)
    assert card.rows == {"train": 3200, "validation": 800}
    assert card.training_window is not None
    start = datetime.fromisoformat(card.training_window["start"])
    end = datetime.fromisoformat(card.training_window["end"])
    assert start.tzinfo is not None and start < end <= datetime(2025, 6, 1, tzinfo=UTC)
    for segment in card.segments:
        assert set(card.metrics[segment]) == {"roc_auc", "log_loss", "brier"}
        table = card.calibration[segment]
        assert 1 <= len(table) <= 10
        assert sum(count for _, _, count in table) == card.rows["validation"]
        assert all(0.0 <= mean <= 1.0 and 0.0 <= frac <= 1.0 for mean, frac, _ in table)


def test_version_is_deterministic_for_the_same_data_and_time() -> None:
    rows, labels, timestamps = generate_demo_training_data(n=400, seed=1)
    _, first = train_segment_model(rows, labels, timestamps, created_at=CREATED_AT)
    _, again = train_segment_model(rows, labels, timestamps, created_at=CREATED_AT)
    _, later = train_segment_model(rows, labels, timestamps, created_at=CREATED_AT + 1)
    flipped = {**labels, "loyal": [1 - y for y in labels["loyal"]]}
    _, other = train_segment_model(rows, flipped, timestamps, created_at=CREATED_AT)
    assert first.version == again.version
    assert later.version.split("-")[2] == first.version.split("-")[2]
    assert later.version != first.version
    assert other.version.split("-")[1] == first.version.split("-")[1]
    assert other.version != first.version


def test_validation_is_the_newest_rows_by_timestamp() -> None:
    rows, labels, timestamps = generate_demo_training_data(n=500, seed=2)
    in_order, card = train_segment_model(rows, labels, timestamps, created_at=CREATED_AT)
    order = list(range(len(rows)))[::-1]  # newest first: the split must still hold out the newest
    reversed_pipeline, reversed_card = train_segment_model(
        [rows[i] for i in order],
        {name: [values[i] for i in order] for name, values in labels.items()},
        [timestamps[i] for i in order],
        created_at=CREATED_AT,
    )
    assert reversed_card.rows == card.rows == {"train": 400, "validation": 100}
    assert reversed_card.training_window == card.training_window
    for segment in card.segments:
        assert reversed_card.metrics[segment] == pytest.approx(card.metrics[segment], rel=1e-6)
    sample = rows[:50]
    np.testing.assert_allclose(
        positive_columns(reversed_pipeline, sample), positive_columns(in_order, sample), atol=1e-6
    )


def test_without_timestamps_rows_are_split_in_order() -> None:
    rows, labels, _ = generate_demo_training_data(n=300, seed=3)
    _, card = train_segment_model(rows, labels, created_at=CREATED_AT)
    assert card.training_window is None
    assert card.rows == {"train": 240, "validation": 60}


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({}, "no segments"),
        ({"loyal": [0, 1]}, "2 labels for 300 rows"),
        ({"loyal": [0] * 300}, "only one label value"),
        ({"loyal": [2] * 300}, "0 or 1"),
    ],
)
def test_training_rejects_unusable_labels(labels: dict[str, list[int]], message: str) -> None:
    rows, _, _ = generate_demo_training_data(n=300, seed=4)
    with pytest.raises(ValueError, match=message):
        train_segment_model(rows, labels)


# -- storage ----------------------------------------------------------------------------------------


def test_save_and_load_round_trip(trained: tuple[Pipeline, ModelCard], tmp_path: Path) -> None:
    pipeline, card = trained
    path = save_model(pipeline, card, tmp_path)
    assert path == tmp_path / f"{card.version}.skops"
    assert (tmp_path / f"{card.version}.json").exists()
    assert (tmp_path / "active").read_text().strip() == card.version

    loaded, loaded_card = load_model(tmp_path)
    assert loaded_card == card
    rows = scoring_rows()[:200]
    np.testing.assert_array_equal(positive_columns(loaded, rows), positive_columns(pipeline, rows))
    before, after = compile_model(pipeline, card), compile_model(loaded, loaded_card)
    assert [before.score(r) for r in rows] == [after.score(r) for r in rows]


def test_load_by_version_and_active_follows_the_last_save(
    trained: tuple[Pipeline, ModelCard], tmp_path: Path
) -> None:
    pipeline, card = trained
    newer = msgspec.structs.replace(card, version="seg-20250602000000-0000abcd")
    save_model(pipeline, card, tmp_path)
    save_model(pipeline, newer, tmp_path)
    assert load_model(tmp_path)[1].version == newer.version
    assert load_model(tmp_path, card.version)[1].version == card.version


def test_load_refuses_another_sklearn_version(
    trained: tuple[Pipeline, ModelCard], tmp_path: Path
) -> None:
    pipeline, card = trained
    save_model(pipeline, card, tmp_path)
    old = msgspec.structs.replace(card, sklearn_version="1.4.2")
    (tmp_path / f"{card.version}.json").write_bytes(msgspec.json.encode(old))
    with pytest.raises(ModelVersionMismatch) as caught:
        load_model(tmp_path)
    message = str(caught.value)
    assert "1.4.2" in message and sklearn.__version__ in message
    assert "vary train" in message
    assert isinstance(caught.value, ModelLoadError)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"not a zip file at all", id="not-a-zip"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_corrupt_model_file_raises_model_load_error(
    trained: tuple[Pipeline, ModelCard], tmp_path: Path, damage
) -> None:
    pipeline, card = trained
    path = save_model(pipeline, card, tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ModelLoadError, match=re.escape(str(path))):
        load_model(tmp_path)


def test_missing_or_corrupt_files_raise_model_load_error(
    trained: tuple[Pipeline, ModelCard], tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match=re.escape(str(tmp_path / "active"))):
        load_model(tmp_path)
    pipeline, card = trained
    path = save_model(pipeline, card, tmp_path)
    with pytest.raises(ModelLoadError, match="seg-20000101000000-00000000.json"):
        load_model(tmp_path, "seg-20000101000000-00000000")
    with pytest.raises(ModelLoadError, match="not a model version"):
        load_model(tmp_path, "../../etc/passwd")
    (tmp_path / f"{card.version}.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not a valid model card"):
        load_model(tmp_path)
    (tmp_path / f"{card.version}.json").write_bytes(msgspec.json.encode(card))
    path.unlink()
    with pytest.raises(ModelLoadError, match=re.escape(str(path))):
        load_model(tmp_path)


def test_trusted_types_are_exactly_what_the_pipeline_is_made_of(
    trained: tuple[Pipeline, ModelCard], tmp_path: Path
) -> None:
    pipeline, card = trained
    path = save_model(pipeline, card, tmp_path)
    used = schema_types(path)
    assert isinstance(TRUSTED_TYPES, tuple)
    assert all(isinstance(name, str) for name in TRUSTED_TYPES)
    assert set(TRUSTED_TYPES) == used
    assert set(skops.io.get_untrusted_types(file=path)) <= set(TRUSTED_TYPES)


def test_a_file_with_an_untrusted_type_is_not_loaded(
    trained: tuple[Pipeline, ModelCard], tmp_path: Path
) -> None:
    pipeline, card = trained
    save_model(pipeline, card, tmp_path)
    dump_with_untrusted_step(pipeline, tmp_path / f"{card.version}.skops")
    with pytest.raises(UntrustedModelError, match="FunctionTransformer") as caught:
        load_model(tmp_path)
    assert "numpy.sqrt" in str(caught.value)
    assert isinstance(caught.value, ModelLoadError)


def test_public_surface() -> None:
    # The compiled model serves from decision/, the seam is in seams.py.
    assert "CompiledSegmentModel" in segments.__all__
    assert "SegmentModel" in seams.__all__
    for module in (segments, seams):
        for name in module.__all__:
            assert hasattr(module, name)
    assert set(segment_model.__all__) >= {
        "ModelCard",
        "ModelLoadError",
        "ModelVersionMismatch",
        "TRUSTED_TYPES",
        "train_segment_model",
        "save_model",
        "load_model",
        "compile_model",
    }
    for name in segment_model.__all__:
        assert hasattr(segment_model, name)

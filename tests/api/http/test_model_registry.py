"""The model registry over HTTP: register, list, activate, roll back, refuse bad files, hot reload."""

from __future__ import annotations

import io
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import skops.io
from litestar.testing import TestClient
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from api.app import create_app
from api.settings import Settings
from personalization.demo.data import DEMO_CSV, read_training_csv
from personalization.models.segment_model import save_model, train_segment_model


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Another segment model version, trained on the demo data with another seed."""
    rows, labels, timestamps = read_training_csv(DEMO_CSV)
    pipeline, card = train_segment_model(rows, labels, timestamps, random_state=3, created_at=2_000_000_000.0)
    directory = tmp_path_factory.mktemp("second-model")
    save_model(pipeline, card, directory)
    return card.version, directory


def _upload(client: TestClient, admin: dict[str, str], model: bytes, card: bytes):  # noqa: ANN202
    return client.post(
        "/v1/models",
        files={"model": ("model.skops", model, "application/octet-stream"), "card": ("card.json", card, "application/json")},
        headers=admin,
    )


def _served_model(client: TestClient, delivery: dict[str, str]) -> str:
    body = {"visitor": {"id": "m-1"}, "entries": ["heroHome"]}
    return str(client.post("/v1/personalize", json=body, headers=delivery).json()["model_version"])


def test_register_activate_and_roll_back(
    client: TestClient, admin: dict[str, str], delivery: dict[str, str], second_model: tuple[str, Path]
) -> None:
    listing = client.get("/v1/models", headers=admin).json()
    first = listing["active"]
    assert first.startswith("seg-") and [m["version"] for m in listing["models"]] == [first]
    assert listing["models"][0]["metrics"]["price_sensitive"]["roc_auc"] > 0.7

    version, directory = second_model
    model = (directory / f"{version}.skops").read_bytes()
    card = (directory / f"{version}.json").read_bytes()
    created = _upload(client, admin, model, card)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == version and created.json()["active"] is False
    assert _served_model(client, delivery) == first  # registered is not active

    activated = client.put("/v1/models/active", json={"version": version}, headers=admin)
    assert activated.status_code == 200 and activated.json()["active"] is True
    assert _served_model(client, delivery) == version
    assert client.get("/v1/models", headers=admin).json()["active"] == version

    assert client.put("/v1/models/active", json={"version": first}, headers=admin).status_code == 200
    assert _served_model(client, delivery) == first
    assert client.get(f"/v1/models/{version}", headers=admin).json()["kind"] == "segments"


def test_bad_models_are_refused(client: TestClient, admin: dict[str, str], delivery: dict[str, str], second_model) -> None:  # noqa: ANN001
    version, directory = second_model
    card = (directory / f"{version}.json").read_bytes()
    assert client.put("/v1/models/active", json={"version": "seg-nope"}, headers=admin).status_code == 404
    assert client.get("/v1/models/seg-nope", headers=admin).status_code == 404

    buffer = io.BytesIO()
    skops.io.dump(Pipeline([("sqrt", FunctionTransformer(np.sqrt))]), buffer)
    untrusted = _upload(client, admin, buffer.getvalue(), card)
    assert untrusted.status_code == 422 and "trusted" in untrusted.text

    corrupt = _upload(client, admin, b"not a zip file", card)
    assert corrupt.status_code == 422 and "skops" in corrupt.text

    other_sklearn = msgspec.json.decode(card)
    other_sklearn["sklearn_version"] = "0.24.2"
    mismatch = _upload(client, admin, (directory / f"{version}.skops").read_bytes(), msgspec.json.encode(other_sklearn))
    assert mismatch.status_code == 422 and "0.24.2" in mismatch.text and "retrain" in mismatch.text

    assert _upload(client, admin, b"x", b"{}").status_code == 422
    assert client.get("/v1/models", headers=delivery).status_code == 403
    assert [m["version"] for m in client.get("/v1/models", headers=admin).json()["models"]] != [version]


def test_every_worker_hot_reloads_within_two_seconds(
    settings: Settings, admin: dict[str, str], delivery: dict[str, str], second_model: tuple[str, Path]
) -> None:
    version, directory = second_model
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        first = _served_model(b, delivery)
        created = _upload(
            a, admin, (directory / f"{version}.skops").read_bytes(), (directory / f"{version}.json").read_bytes()
        )
        assert created.status_code == 201
        started = time.monotonic()
        assert a.put("/v1/models/active", json={"version": version}, headers=admin).status_code == 200
        served: list[str] = []
        while time.monotonic() - started < 2.0:
            response = b.post(
                "/v1/personalize", json={"visitor": {"id": "hot"}, "entries": ["heroHome"]}, headers=delivery
            )
            assert response.status_code == 200  # no failed request during the swap
            served.append(response.json()["model_version"])
            if served[-1] == version:
                break
        assert served[-1] == version, served
        assert first != version

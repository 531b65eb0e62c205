"""Model uploads over HTTP: zip bombs, malformed versions and replacements are refused (#17, item 7).

Real HTTP through Litestar's test client, against the real Valkey server; the app's worker is the
test process, so what it allocates while refusing a bomb is measured here with :mod:`tracemalloc`.
"""

from __future__ import annotations

import resource
import time
import tracemalloc
from pathlib import Path

import msgspec
from litestar.testing import TestClient

from api.http.errors import to_http
from personalization.errors import ModelVersionExists
from personalization.models.files import read_model_files
from tests.personalization.models.skops_files import MiB, zip_of


def _upload(client: TestClient, admin: dict[str, str], model: bytes, card: bytes):
    return client.post(
        "/v1/models",
        files={"model": ("model.skops", model, "application/octet-stream"), "card": ("card.json", card, "application/json")},
        headers=admin,
    )


def _demo(model_dir: Path) -> tuple[str, bytes, bytes]:
    version, card, data, _ = read_model_files(model_dir / "models", None)
    return version, card, data


def test_a_zip_bomb_is_a_quick_422_naming_the_member_and_the_worker_does_not_balloon(
    client: TestClient, admin: dict[str, str], model_dir: Path
) -> None:
    _, card, _ = _demo(model_dir)
    card = msgspec.json.encode({**msgspec.json.decode(card), "version": "seg-bomb"})  # a new version
    bomb = zip_of([("schema.json", 300 * MiB)])
    assert len(bomb) < 2 * MiB  # a small upload …
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    started = time.perf_counter()
    try:
        response = _upload(client, admin, bomb, card)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "'schema.json'" in detail and "314,572,800 bytes" in detail and "model refused" in detail
    assert seconds < 5.0
    assert peak < 64 * MiB  # … that unpacked to 300 MB (and held 575 MB more) before
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200 * 1024
    assert [m["version"] for m in client.get("/v1/models", headers=admin).json()["models"]] == [_demo(model_dir)[0]]


def test_a_traversal_version_is_a_400_naming_the_field_everywhere_it_enters(
    client: TestClient, admin: dict[str, str], model_dir: Path
) -> None:
    _, card, data = _demo(model_dir)
    traversal = msgspec.json.encode({**msgspec.json.decode(card), "version": "../../etc/passwd"})
    uploaded = _upload(client, admin, data, traversal)
    assert uploaded.status_code == 400, uploaded.text
    assert uploaded.json()["extra"][0]["key"] == "card.version"
    assert "'../../etc/passwd' is not a model version" in uploaded.json()["detail"]

    for version in ("../../etc/passwd", ".hidden", "v1\n"):  # activate and roll back are one route
        activated = client.put("/v1/models/active", json={"version": version}, headers=admin)
        assert activated.status_code == 400, (version, activated.text)
        assert activated.json()["extra"][0]["key"] == "version"
    for path in ("/v1/models/.hidden", "/v1/models/bad%20version"):
        assert client.get(path, headers=admin).status_code == 400
        evaluated = client.post(f"{path}/evaluate", headers=admin)
        assert evaluated.status_code == 400 and evaluated.json()["extra"][0]["key"] == "version"
    form = client.post("/dashboard/models/.hidden/evaluate", data={"n_bootstrap": "20"}, headers=admin)
    assert form.status_code == 400 and "is not a model version" in form.text  # the dashboard's form too
    listed = client.get("/v1/models", headers=admin).json()
    assert [m["version"] for m in listed["models"]] == [_demo(model_dir)[0]]


def test_re_uploading_the_active_version_is_a_409_and_its_card_is_unchanged(
    client: TestClient, admin: dict[str, str], model_dir: Path
) -> None:
    version, card, data = _demo(model_dir)
    before = client.get(f"/v1/models/{version}", headers=admin).json()
    assert before["active"] is True

    replaced = msgspec.json.decode(card)
    replaced["metrics"] = {segment: {**m, "roc_auc": 0.999} for segment, m in replaced["metrics"].items()}
    for attempt in (msgspec.json.encode(replaced), card):  # a changed card, and the same one again
        response = _upload(client, admin, data, attempt)
        assert response.status_code == 409, response.text
        assert version in response.json()["detail"] and "registered already" in response.json()["detail"]
    assert client.get(f"/v1/models/{version}", headers=admin).json() == before


def test_conflict_is_the_one_409() -> None:
    http = to_http(ModelVersionExists("seg-1"))
    assert http.status_code == 409 and "'seg-1'" in str(http.detail)

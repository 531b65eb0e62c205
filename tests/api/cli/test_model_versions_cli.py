"""``vary models`` / ``vary evaluate`` / ``vary train`` refuse malformed versions and never replace a
registered one (#17, item 7), against the real Valkey server."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import redis

from api.cli.main import main
from api.cli.models import store
from api.settings import Settings
from personalization.models.files import read_model_files
from personalization.store.keys import MODELS_CARD_PREFIX


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> Path:
    for name in ("VARY_CONTENT_SOURCE", "VARY_TRAIN_DEMO_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VARY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VARY_REDIS_URL", redis_url)
    return tmp_path / "data"


@pytest.mark.parametrize("version", ["../../etc/passwd", ".hidden", "a b"])
def test_a_malformed_version_on_the_command_line_is_refused(
    env: Path, version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "show", version]) == 2
    assert "is not a model version" in capsys.readouterr().err
    assert main(["evaluate", "--model", version, "--data", str(env / "none.csv")]) == 2
    assert "--model: " in capsys.readouterr().err


def test_storing_a_version_the_registry_holds_leaves_it_unchanged(
    env: Path, redis_url: str, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version, card, data, _ = read_model_files(model_dir / "models", None)
    settings = Settings(redis_url=redis_url, data_dir=env)
    assert store(settings, env / "models", version, data, card, activate=True) == 0
    capsys.readouterr()

    other = msgspec.json.decode(card)
    other["created_at"] += 1.0
    assert store(settings, env / "models", version, data, msgspec.json.encode(other), activate=True) == 1
    assert "registered already" in capsys.readouterr().err
    client = redis.Redis.from_url(redis_url)
    try:
        stored = msgspec.json.decode(client.get(MODELS_CARD_PREFIX + version))
        assert stored["created_at"] == msgspec.json.decode(card)["created_at"]
    finally:
        client.close()

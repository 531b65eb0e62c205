"""``vary serve`` hands its resolved settings to the workers without writing ``VARY_*`` variables."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn.importer

import api.app
import api.embedded.valkey
from api.cli.main import main
from api.settings import WORKER_SETTINGS_VARIABLE, Settings

EMBEDDED_URL = "redis://127.0.0.1:1/0"


class FakeValkey:
    """Stands in for the embedded Valkey: starting it only hands out a URL."""

    stopped = False

    def __init__(self, data_dir: Path) -> None:
        self.url: str | None = None

    def start(self) -> str:
        self.url = EMBEDDED_URL
        return self.url

    def stop(self) -> None:
        FakeValkey.stopped = True


@pytest.fixture
def serve_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[Settings]]:
    """``vary serve`` with a fake Valkey and a uvicorn that, like each worker, imports and calls
    the factory; yields the settings every built app got."""
    for name in [n for n in os.environ if n.startswith("VARY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("VARY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VARY_TRAIN_DEMO_MODEL", "false")
    monkeypatch.setattr(api.embedded.valkey, "EmbeddedRedis", FakeValkey)
    monkeypatch.setattr(FakeValkey, "stopped", False)
    built: list[Settings] = []

    def create_app(settings: Settings, *, print_keys: bool = True) -> str:
        assert print_keys is False  # the keys were printed once, by vary serve
        built.append(settings)
        return "app"

    monkeypatch.setattr(api.app, "create_app", create_app)
    sigterm = signal.getsignal(signal.SIGTERM)
    yield built
    signal.signal(signal.SIGTERM, sigterm)


def test_workers_get_the_resolved_settings_and_no_vary_variable_is_written(
    serve_env: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = dict(os.environ)
    during: list[dict[str, str]] = []

    def run(app: str, *, factory: bool, workers: int, **kwargs: Any) -> None:
        assert factory and isinstance(app, str) and workers == 3  # what uvicorn needs for workers > 1
        during.append(dict(os.environ))
        for _ in range(workers):
            assert uvicorn.importer.import_from_string(app)() == "app"

    monkeypatch.setattr(uvicorn, "run", run)
    assert main(["serve", "--workers", "3", "--no-sinks", "--no-aggregate"]) == 0
    assert FakeValkey.stopped

    assert len(serve_env) == 3
    for settings in serve_env:
        assert settings.redis_url == EMBEDDED_URL
        assert settings.aggregate is False and settings.sinks_in_process is False
        assert settings.data_dir == Path(before["VARY_DATA_DIR"])
    # While serving, the new variables are the internal one and prometheus-client's multiprocess
    # directory (inside the data dir, so every worker reports into one scrape); no VARY_REDIS_URL, ...
    [environ] = during
    assert set(environ) - set(before) == {WORKER_SETTINGS_VARIABLE, "PROMETHEUS_MULTIPROC_DIR"}
    assert Path(environ["PROMETHEUS_MULTIPROC_DIR"]).parent == Path(before["VARY_DATA_DIR"])
    assert "VARY_REDIS_URL" not in environ
    # After vary serve returns, the environment is as it was.
    assert dict(os.environ) == before


def test_a_configured_redis_is_handed_over_as_is(
    serve_env: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VARY_REDIS_URL", "redis://example:6390/2")
    monkeypatch.setattr(
        uvicorn, "run", lambda app, **kwargs: uvicorn.importer.import_from_string(app)()
    )
    assert main(["serve", "--workers", "1"]) == 0
    [settings] = serve_env
    assert settings.redis_url == "redis://example:6390/2"
    assert settings.aggregate is True and settings.sinks_in_process is True
    assert os.environ["VARY_REDIS_URL"] == "redis://example:6390/2"
    assert WORKER_SETTINGS_VARIABLE not in os.environ

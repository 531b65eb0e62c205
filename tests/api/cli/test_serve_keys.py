"""``vary serve`` prints generated keys once, when it makes them; later starts say where they are kept
(issue #17, item 10: both keys used to be printed at every start, into every terminal and log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.cli.main import main
from api.http.auth import ensure_keys
from tests.api.cli.test_serve_settings import serve_env  # noqa: F401  (the fixture: fake Valkey, no uvicorn)

pytestmark = pytest.mark.usefixtures("serve_env")


def test_keys_are_printed_once_when_generated_then_only_where_they_are_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    monkeypatch.setenv("VARY_LOG_FORMAT", "text")  # the lines as a terminal shows them (logger "vary")
    assert main(["serve"]) == 0
    first = capsys.readouterr().out
    keys = (tmp_path / "data" / "keys.json").read_text()
    delivery, admin, _ = ensure_keys((), (), tmp_path / "data")
    assert f"vary: delivery key: {delivery[0]}" in first and f"vary: admin key: {admin[0]}" in first
    assert main(["serve"]) == 0
    second = capsys.readouterr().out
    assert delivery[0] not in second and admin[0] not in second
    assert f"API keys are kept in {tmp_path / 'data' / 'keys.json'}" in second
    assert (tmp_path / "data" / "keys.json").read_text() == keys  # the same keys, not new ones


def test_configured_keys_are_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VARY_DELIVERY_KEYS", "configured-delivery")
    monkeypatch.setenv("VARY_ADMIN_KEYS", "configured-admin")
    seen: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.append(app))
    assert main(["serve"]) == 0
    out = capsys.readouterr().out
    assert seen and "configured-" not in out and "keys.json" not in out


def test_ensure_keys_returns_keys_for_printing_only_when_it_made_them(tmp_path: Path) -> None:
    d1, a1, shown = ensure_keys((), (), tmp_path)
    assert shown == {"delivery": d1[0], "admin": a1[0]}
    assert ensure_keys((), (), tmp_path) == (d1, a1, {})
    assert ensure_keys(("mine",), (), tmp_path) == (("mine",), a1, {})

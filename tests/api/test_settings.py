from __future__ import annotations

import logging
from pathlib import Path

import pytest

from api.http.auth import KeyRing, digest, ensure_keys
from api.settings import (
    WORKER_SETTINGS_VARIABLE,
    Settings,
    SettingsError,
    encode_worker_settings,
    load_settings,
    plugin_prefixes,
    unknown_variables,
    worker_settings,
)


def test_settings_from_environment() -> None:
    settings = load_settings(
        {
            "VARY_PORT": "9000",
            "VARY_DATA_DIR": "/tmp/x",
            "VARY_DELIVERY_KEYS": "a, b",
            "VARY_CONTENTFUL_HTTPS": "false",
            "VARY_REDIS_URL": "",
            "HOME": "/root",
        }
    )
    assert settings.port == 9000 and settings.data_dir == Path("/tmp/x")
    assert settings.delivery_keys == ("a", "b") and settings.contentful_https is False
    assert settings.redis_url is None
    assert (settings.global_holdout, settings.state_refresh_s) == (0.0, 2.0)
    assert load_settings({"VARY_GLOBAL_HOLDOUT": "0.05"}).global_holdout == 0.05


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"VARY_PORT": "eighty"}, "VARY_PORT"),
        ({"VARY_PORT": "0"}, "VARY_PORT"),
        ({"VARY_CONTENTFUL_HTTPS": "maybe"}, "VARY_CONTENTFUL_HTTPS"),
        ({"VARY_CONTENT_SOURCE": "contentful"}, "VARY_CONTENTFUL_SPACE_ID"),
        ({"VARY_GLOBAL_HOLDOUT": "0.6"}, "VARY_GLOBAL_HOLDOUT"),
        ({"VARY_GLOBAL_HOLDOUT": "-0.1"}, "VARY_GLOBAL_HOLDOUT"),
        ({"VARY_STATE_REFRESH_S": "0"}, "VARY_STATE_REFRESH_S"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        load_settings(env)


def test_keyring_scopes_and_hashed_keys() -> None:
    ring = KeyRing(delivery=["d1", "sha256:" + digest("d2").hex()], admin=["a1"])
    assert ring.scope_of("d1") == "delivery" and ring.scope_of("d2") == "delivery"
    assert ring.scope_of("a1") == "admin" and ring.scope_of("x") is None


def test_generated_keys_are_kept_between_starts(tmp_path: Path) -> None:
    d1, a1, shown = ensure_keys((), (), tmp_path)
    assert shown == {"delivery": d1[0], "admin": a1[0]}
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    d2, a2, _ = ensure_keys((), (), tmp_path)
    assert (d1, a1) == (d2, a2)
    assert ensure_keys(("x",), ("y",), tmp_path) == (("x",), ("y",), {})


def test_unknown_variables_are_reported_with_a_close_match(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vary.settings"):
        settings = load_settings({"VARY_REDIS_ULR": "redis://x", "VARY_PORT": "9000"})
    assert settings.redis_url is None and settings.port == 9000  # reported, not applied, not refused
    [record] = [r for r in caplog.records if r.name == "vary.settings"]
    assert record.levelno == logging.WARNING
    assert "VARY_REDIS_ULR" in record.getMessage()
    assert "did you mean VARY_REDIS_URL?" in record.getMessage()
    assert "VARY_PORT" not in record.getMessage()


def test_known_variables_and_the_internal_worker_variable_are_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {
        "VARY_PORT": "9000",
        "VARY_REDIS_URL": "redis://x",
        "VARY_DELIVERY_KEYS": "",
        WORKER_SETTINGS_VARIABLE: "{}",
        "HOME": "/root",
    }
    with caplog.at_level(logging.DEBUG, logger="vary.settings"):
        load_settings(environ)
    assert [r for r in caplog.records if r.name == "vary.settings"] == []
    assert unknown_variables(environ) == []


def test_a_plugins_own_variables_are_not_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Variables under an installed plugin's entry-point name are the plugin's; others still warn."""
    from importlib.metadata import EntryPoint

    import api.settings as settings_module

    installed = [
        EntryPoint(name="example", value="vary_example_plugin:plugin", group="vary.plugins"),
        EntryPoint(name="crm-tier", value="crm:plugin", group="vary.plugins"),
    ]
    monkeypatch.setattr(
        settings_module, "entry_points", lambda group: [ep for ep in installed if ep.group == group]
    )
    assert plugin_prefixes() == ("VARY_EXAMPLE_", "VARY_CRM_TIER_")
    environ = {"VARY_EXAMPLE_CRM_TABLE": "crm.csv", "VARY_CRM_TIER_URL": "http://crm", "VARY_CRMTIER": "x"}
    with caplog.at_level(logging.WARNING, logger="vary.settings"):
        load_settings(environ)
    [record] = [r for r in caplog.records if r.name == "vary.settings"]
    assert "VARY_CRMTIER" in record.getMessage()
    assert "VARY_EXAMPLE_CRM_TABLE" not in record.getMessage()
    assert "VARY_CRM_TIER_URL" not in record.getMessage()
    assert unknown_variables(environ, ("VARY_EXAMPLE_",)) == ["VARY_CRMTIER", "VARY_CRM_TIER_URL"]


def test_worker_settings_round_trip_through_the_one_internal_variable() -> None:
    settings = Settings(redis_url="redis://x", data_dir=Path("/tmp/d"), delivery_keys=("a", "b"), aggregate=False)
    environ = {WORKER_SETTINGS_VARIABLE: encode_worker_settings(settings), "VARY_PORT": "1"}
    assert worker_settings(environ) == settings  # the handed-over settings win over the environment
    assert worker_settings({"VARY_PORT": "1"}).port == 1  # without it: read the environment

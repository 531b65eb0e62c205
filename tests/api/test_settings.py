from __future__ import annotations

from pathlib import Path

import pytest

from api.http.auth import KeyRing, digest, ensure_keys
from api.settings import SettingsError, load_settings


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


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"VARY_PORT": "eighty"}, "VARY_PORT"),
        ({"VARY_PORT": "0"}, "VARY_PORT"),
        ({"VARY_CONTENTFUL_HTTPS": "maybe"}, "VARY_CONTENTFUL_HTTPS"),
        ({"VARY_CONTENT_SOURCE": "contentful"}, "VARY_CONTENTFUL_SPACE_ID"),
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

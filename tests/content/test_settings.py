"""The optional ``varySettings`` entry: the space's declared goals, read into the snapshot (#17 item 2)."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from content.settings import MAX_SPACE_GOALS, SETTINGS_TYPE
from content.store import ContentStore
from tests.content.spaces import add_content_type, add_entry, compile_export

DEMO_SETTINGS_ID = "spaceSettings"
_FIELDS = [{"id": "name", "type": "Symbol"}, {"id": "goals", "type": "Array", "items": {"type": "Symbol"}}]


def _with_settings(export: dict[str, Any], entry_id: str, goals: object) -> None:
    # The demo's own settings entry (its global holdout, no goals) makes way for the test's.
    export["entries"] = [e for e in export["entries"] if e["sys"]["id"] != DEMO_SETTINGS_ID]
    if not any(t["sys"]["id"] == SETTINGS_TYPE for t in export["contentTypes"]):
        add_content_type(export, SETTINGS_TYPE, _FIELDS)
    add_entry(export, entry_id, SETTINGS_TYPE, {"name": "Settings", "goals": goals})


def test_the_demo_space_declares_no_goals(demo_export: dict[str, Any]) -> None:
    snapshot = compile_export(demo_export)
    assert snapshot.goals is None and not snapshot.issues
    _with_settings(demo_export, "settings", [])
    assert compile_export(demo_export).goals is None  # an emptied list: the default again


def test_declared_goals_are_read_cleaned_and_bounded(demo_export: dict[str, Any]) -> None:
    _with_settings(demo_export, "settings", [" lead ", "lead", "", "purchase", "x" * 200])
    snapshot = compile_export(demo_export)
    assert snapshot.goals == ("lead", "purchase")
    assert [i.entry_id for i in snapshot.issues] == ["settings"] and "longer than" in snapshot.issues[0].problem


def test_too_many_goals_are_cut_and_reported(demo_export: dict[str, Any]) -> None:
    _with_settings(demo_export, "settings", [f"g{n}" for n in range(MAX_SPACE_GOALS + 5)])
    snapshot = compile_export(demo_export)
    assert snapshot.goals is not None and len(snapshot.goals) == MAX_SPACE_GOALS
    assert "More than" in snapshot.issues[0].problem


def test_a_malformed_list_or_a_second_entry_is_an_issue_not_an_error(demo_export: dict[str, Any]) -> None:
    _with_settings(demo_export, "settings", "purchase, signup")
    snapshot = compile_export(demo_export)
    assert snapshot.goals is None
    assert "not a list" in snapshot.issues[0].problem and snapshot.issues[0].entry_id == "settings"
    _with_settings(demo_export, "settings-copy", ["signup"])
    snapshot = compile_export(demo_export)
    assert any(i.entry_id == "settings-copy" and "more than one" in i.problem for i in snapshot.issues)


def test_a_standalone_aggregator_follows_the_stored_contents_goals(redis_url: str, demo_export: dict[str, Any]) -> None:
    """``vary aggregate`` has no snapshot of its own: it compiles the content the workers stored."""
    from api.cli.stored_goals import StoredGoals

    _with_settings(demo_export, "settings", ["lead"])
    snapshot = compile_export(demo_export)

    async def body() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        redis = Redis.from_url(redis_url)
        goals = StoredGoals(redis, link_depth=2)
        await goals.refresh()
        nothing_stored = goals().allowed("hero-sale")
        assert snapshot.items is not None
        await ContentStore(redis).save(snapshot.items, None, snapshot.version)
        await goals.refresh()
        await redis.aclose()
        return nothing_stored, goals().allowed("banner-shipping-test"), goals().allowed("some-ninetailed-one")

    nothing_stored, configured, undeclared = asyncio.run(body())
    assert nothing_stored == ("purchase", "signup")  # the default until content is found
    assert configured == ("signup", "purchase") and undeclared == ("lead",)

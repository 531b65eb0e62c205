"""Goal names Vary reserves (``n:…``, personalization/types.py) in content: an experience's goals and
the space's declared goals leave them out and say so; the experience keeps running on the others."""

from __future__ import annotations

from typing import Any

from content.settings import SETTINGS_TYPE
from personalization.types import RESERVED_GOAL_PREFIX, goal_name_problem
from tests.content.spaces import add_content_type, add_entry, compile_export, set_field


def test_the_rule() -> None:
    assert RESERVED_GOAL_PREFIX == "n:"
    assert goal_name_problem("signup") is None and goal_name_problem("sign:n:up") is None
    assert goal_name_problem("non-member") is None  # only the prefix with its colon is reserved
    problem = goal_name_problem("n:signup")
    assert problem is not None and "'n:signup'" in problem


def test_an_experiences_reserved_goal_is_left_out_and_said(demo_export: dict[str, Any]) -> None:
    set_field(demo_export, "expHeroSale", "goals", ["purchase", "n:purchase", "n:"])
    snapshot = compile_export(demo_export)
    sale = next(e for e in snapshot.experiences_for("heroHome") if e.key == "hero-sale")
    assert sale.goals == ("purchase",)  # still running, on its other goal
    said = [i for i in snapshot.issues if i.entry_id == "expHeroSale"]
    assert len(said) == 2 and all("reserved" in i.problem and "switched off" not in i.problem for i in said)
    assert "'n:purchase'" in said[0].problem and "Rename" in said[0].fix


def test_a_reserved_space_goal_is_left_out_and_said(demo_export: dict[str, Any]) -> None:
    export = demo_export
    export["entries"] = [e for e in export["entries"] if e["sys"]["id"] != "spaceSettings"]
    if not any(t["sys"]["id"] == SETTINGS_TYPE for t in export["contentTypes"]):
        add_content_type(export, SETTINGS_TYPE, [{"id": "name", "type": "Symbol"},
                                                 {"id": "goals", "type": "Array", "items": {"type": "Symbol"}}])
    add_entry(export, "settings", SETTINGS_TYPE, {"name": "Settings", "goals": ["lead", "n:lead"]})
    snapshot = compile_export(export)
    assert snapshot.goals == ("lead",)
    (said,) = [i for i in snapshot.issues if i.entry_id == "settings"]
    assert "reserved" in said.problem and "'n:lead'" in said.problem

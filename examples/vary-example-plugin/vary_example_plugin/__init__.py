"""An example Vary plugin: one audience attribute and one event sink.

- **Attribute** ``crm_tier``: looked up in a local CSV table (``visitor_id,tier``) named by
  ``VARY_EXAMPLE_CRM_TABLE``, read once and cached — the shape a real CRM lookup takes, without the
  network. Audiences can then use ``{"crm_tier": "gold"}``.
- **Sink** ``example-jsonl``: appends every exposure and event as one JSON line to the file named by
  ``VARY_EXAMPLE_SINK_FILE``.

Vary finds it through the entry point in ``pyproject.toml``::

    [project.entry-points."vary.plugins"]
    example = "vary_example_plugin:plugin"

``plugin`` is a function, so the environment is read when Vary starts, not at import.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from personalization.seams import Plugin, SinkRecord
from personalization.types import Visitor

__all__ = ["CrmTier", "JsonLinesSink", "plugin"]


class CrmTier:
    """``crm_tier`` from a CSV table, loaded on first use and kept in memory (the cache)."""

    def __init__(self, table: Path) -> None:
        self.table = table
        self._tiers: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        with self.table.open(newline="") as handle:
            return {row["visitor_id"]: row["tier"] for row in csv.DictReader(handle)}

    async def __call__(self, visitor: Visitor) -> Mapping[str, str]:
        if self._tiers is None:
            self._tiers = self._load()
        tier = self._tiers.get(visitor.id)
        return {"crm_tier": tier} if tier else {}


class JsonLinesSink:
    """Appends each record as ``{"kind", "message_id", "data"}`` to a JSON Lines file."""

    def __init__(self, path: Path) -> None:
        self.name = "example-jsonl"
        self.path = path

    async def deliver(self, batch: Sequence[SinkRecord]) -> None:
        lines = [
            json.dumps({"kind": r.kind, "message_id": r.message_id, "data": msgspec.to_builtins(r.record)})
            for r in batch
        ]
        with self.path.open("a") as handle:
            handle.write("\n".join(lines) + "\n")


def plugin() -> Plugin:
    """The plugin, configured from the environment (a seam without its variable is left out)."""
    table = os.environ.get("VARY_EXAMPLE_CRM_TABLE")
    sink_file = os.environ.get("VARY_EXAMPLE_SINK_FILE")
    return Plugin(
        name="example",
        attributes=[CrmTier(Path(table))] if table else [],
        sinks=[JsonLinesSink(Path(sink_file))] if sink_file else [],
        timeout_s=0.2,
    )

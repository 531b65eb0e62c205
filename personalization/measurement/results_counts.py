"""Reading one aggregate hash back: the ``<variant>:<field>`` layout the aggregator writes, split by variant.

The aggregation scripts (:mod:`personalization.measurement.aggregation`, ``scripts/outcome.lua``)
store each experience's counters as hash fields named ``<variant label>:<counter>`` (``1:conv:signup``,
``h:visitors`` for the holdout) next to a few experience-wide fields without a label
(``variant_conflicts``). Every results module reads them through :class:`Counts`, so the layout is
parsed in one place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

__all__ = ["Counts", "text"]


def text(value: bytes | str) -> str:
    """A Redis reply as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else value


def _number(value: bytes | str) -> float:
    raw = text(value)
    try:
        return int(raw)
    except ValueError:
        return float(raw)


class Counts:
    """One aggregate hash split by variant label: ``get(v, "conv:signup")``."""

    def __init__(self, raw: Mapping[bytes | str, bytes | str] | None) -> None:
        self.top: dict[str, float] = {}
        self.by_variant: dict[str, dict[str, float]] = defaultdict(dict)
        for key, value in (raw or {}).items():
            label, sep, rest = text(key).partition(":")
            if sep:
                self.by_variant[label][rest] = _number(value)
            else:
                self.top[label] = _number(value)

    def get(self, variant: int | str, name: str) -> float:
        return self.by_variant.get(str(variant), {}).get(name, 0)

    def count(self, variant: int | str, name: str) -> int:
        return int(self.get(variant, name))

    def has(self, name: str) -> bool:
        return any(name in fields for fields in self.by_variant.values())

    def with_prefix(self, variant: int | str, prefix: str) -> dict[str, float]:
        n = len(prefix)
        return {k[n:]: v for k, v in self.by_variant.get(str(variant), {}).items() if k.startswith(prefix)}

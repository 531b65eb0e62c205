"""An experience's ``frequencyCap`` field: how often one person may be served it.

The field is a JSON object ``{"max": 3, "per": "day"}`` — at most ``max`` exposures (a whole number
≥ 1) per UTC ``day``, ISO ``week``, or over the whole ``campaign`` — compiled into
:class:`~personalization.types.FrequencyCap` (the decision side is
``personalization.decision.frequency``). A value Vary cannot read is reported and switches the
experience off: running it uncapped is exactly the annoyance the cap was set to prevent.
"""

from __future__ import annotations

from personalization.types import FrequencyCap

__all__ = ["PERIODS", "parse_frequency_cap"]

PERIODS = ("day", "week", "campaign")
_FIX = 'Enter the cap as {"max": 3, "per": "day"} (per: day, week or campaign), or clear the field.'


def parse_frequency_cap(value: object) -> tuple[FrequencyCap | None, list[tuple[str, str]]]:
    """The field's value read: the cap (``None``: no cap) and (problem, fix) pairs, each problem's
    text following "Experience <label> "."""
    if value is None or value == {}:
        return None, []
    if not isinstance(value, dict) or set(value) - {"max", "per"}:
        return None, [(f"has a frequency cap (field frequencyCap) Vary cannot read: {value!r}.", _FIX)]
    most, per = value.get("max"), value.get("per", "day")
    whole = isinstance(most, (int, float)) and not isinstance(most, bool) and float(most).is_integer()
    if not whole or most < 1:  # type: ignore[operator]
        return None, [(f"has a frequency cap whose max is not a whole number of at least 1: {most!r}.", _FIX)]
    if per not in PERIODS:
        return None, [(f"has a frequency cap per {per!r}; Vary counts per day, week or campaign.", _FIX)]
    return FrequencyCap(max_exposures=int(most), period=per), []  # type: ignore[arg-type]

"""Frequency caps: how often one person has been exposed to an experience, and whether that is enough.

Follow-up touches must not turn into annoyance: an experience may cap how often one person is
served it (:class:`~personalization.types.FrequencyCap`: at most ``max_exposures`` per UTC day, ISO
week, or over the whole campaign). Counts come from the person's exposures on every channel: the
exposure writer (:mod:`personalization.store.exposures`) keeps one rolling counter per experience
in the visitor's profile hash, field ``f:<experience>`` = ``"<day> <n day> <week> <n week> <n all>"``
(day = Unix days, week = ISO weeks since the epoch's Monday), read with the profile in the same
round trip. A counter from an earlier day or week counts 0 for it.

Every exposure logged under an experience counts, whatever its arm (control too), so capping treats
the arms alike and the comparison stays fair; past the cap the visitor gets the baseline with the
reason ``frequency cap: …`` and no exposure of the experience (their exposure is content's), which
is why the count stops there. The counts are in the audience document as
``profile.exposures.<experience>.{day, week, campaign}`` (:mod:`personalization.decision.context`),
which is also where :func:`cap_reached` reads them. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from personalization.types import Experience

__all__ = ["FREQUENCY_PREFIX", "buckets", "cap_reached", "exposure_counts"]

#: Profile hash field prefix of a counter (``f:<experience key>``).
FREQUENCY_PREFIX = "f:"
_DAY = 86_400


def buckets(now: float) -> tuple[int, int]:
    """The UTC day and the ISO week (Monday to Sunday) of ``now``, as integers since the epoch.
    1970-01-01 was a Thursday, so week ``w`` starts on day ``7w − 3``."""
    day = int(now // _DAY)
    return day, (day + 3) // 7


def exposure_counts(raw: str, now: float) -> dict[str, int]:
    """A stored counter as ``{"day", "week", "campaign"}`` exposures as of ``now`` (malformed: 0s)."""
    try:
        day, n_day, week, n_week, total = (int(part) for part in raw.split())
    except ValueError:
        return {"day": 0, "week": 0, "campaign": 0}
    today, this_week = buckets(now)
    return {"day": n_day if day == today else 0, "week": n_week if week == this_week else 0, "campaign": total}


def cap_reached(experience: Experience, attributes: dict[str, Any]) -> str | None:
    """Why the experience is not served (the cap's reason), ``None`` while under its cap or uncapped."""
    cap = experience.frequency_cap
    if cap is None:
        return None
    profile = attributes.get("profile")
    exposures = profile.get("exposures") if isinstance(profile, dict) else None
    counts = exposures.get(experience.key) if isinstance(exposures, dict) else None
    seen = counts.get(cap.period, 0) if isinstance(counts, dict) else 0
    if seen < cap.max_exposures:
        return None
    per = "in this campaign" if cap.period == "campaign" else f"per {cap.period}"
    return (
        f"frequency cap: {experience.key!r} is served at most {cap.max_exposures} times {per} "
        f"and this person has seen it {seen} times (all channels); baseline served"
    )

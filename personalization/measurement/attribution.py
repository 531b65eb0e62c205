"""Attribution: which aggregate counters a stream entry moves, the rules the aggregation scripts implement.

The counting itself runs inside Redis, in Lua (``scripts/outcome.lua`` with ``scripts/journey.lua``,
and ``scripts/apply.lua``; :mod:`personalization.measurement.aggregation` drives them), because it
must read and update a visitor's state atomically. This module is the Python side of those
scripts: the rules they implement, written out below; the record each entry becomes on its way in
(:func:`exposure_record`, :func:`event_record`: what the script reads, field by field); and the pure
functions the results pages share with them (:func:`top_segment`, :func:`week_index`,
:func:`utc_day`, :func:`duration_bucket`). Key names are in :mod:`personalization.store.keys`.

Attribution
-----------
An event counts for every experience the visitor was exposed to *before* it (``first exposure ts ≤
event ts ≤ first exposure ts + window``), in the variant of their first exposure (sticky: a later
exposure in another variant only bumps ``variant_conflicts``). The window is fixed per visitor at
their first exposure (``attribution_window_s``, a number or a function of the experience key), so
changing it later does not move already-exposed visitors. Events of a visitor with no exposure yet
are not attributed. Exposures with ``visitor_id = None`` (no analytics consent) count in the
``exposures`` / ``anonymous`` entry totals but nothing can be attributed to them and they are not
``visitors``. Holdout exposures are kept apart as variant ``h`` (not in the variant arms, so the
sample-ratio check compares entrants against the configured weights).

Phases: an exposure served in phase ``n > 1`` of an experience (``Exposure.phase``) counts under the
phase's own name ``<x>@p<n>`` (:func:`~personalization.types.phase_key`) as if it were another
experience: its own aggregates ``vary:agg:{<x>@p<n>}:…``, and the visitor's own first exposure,
window, variant and flags for it. So an event is attributed to every phase the visitor was exposed
in (within each one's window), and phase 1 keeps the names it had before phases existed. Every rule
that needs the experience itself (its goals) strips the ``@p<n>`` suffix (:func:`experience_of`).

Goals: a ``conversion`` counts for its ``goal``; a ``purchase`` counts as goal ``"purchase"`` with
the order value as its value, is de-duplicated per visitor by ``order_id``, and also counts buyers
and repeat buyers (≥ 2 orders) for the repeat-purchase rate. An experience counts only the goals it
allows (:mod:`personalization.measurement.goals`: its own list, else the space's declared goals);
a conversion of any other goal, a conversion or purchase beyond the per-visitor limit per minute
and a repeated survey answer of the day are counted as ``discarded:<reason>`` instead.

CUPED: the visitor's lifetime value per goal (``vary:vh:{<visitor tag>}:t``) is snapshot at their first
exposure to an experience as the pre-exposure value X of that experience (``<v>:xsum|xsumsq``); a
value stamped before the first exposure but processed after it is added to X then, so X does not
depend on the order entries are processed in. Each attributed value adds ``X · value`` to
``<v>:xysum``.

CUPED on conversions: the same for the visitor's *number* of conversions of a goal (purchases: of
distinct orders), kept in the totals hash as ``n:<goal>`` for goals some experience counts and
capped at :data:`MAX_PRE_EXPOSURE_CONVERSIONS` (one visitor's flood cannot dominate the arm's
sums). At first exposure it becomes X (``<x>|xn:<goal>``; ``<v>:xcsum|xcsumsq``); Y is 1 once the
visitor converted in the window (``<v>:conv``), and the first such conversion adds X to
``<v>:xcysum`` (Σ X·Y). A conversion stamped before the first exposure but processed after it adds
1 to X then (``2X + 1`` to the squares, and 1 to Σ X·Y if Y is already 1).

Returning visitors: ``<v>:returning`` counts a visitor (in their sticky variant) once they have
exposures to the experience on two UTC days — an exposure whose day differs from the earliest one
processed so far. Exact in any processing order: a late earlier exposure on another day counts too.

Revenue per currency: a purchase counts in its ISO 4217 currency (:mod:`~personalization.measurement.
currencies`; ``XXX`` when it has none), never summed across currencies. Per arm and currency the
``all`` hash holds ``<v>:cur:<CUR>:orders``, ``revenue``, ``buyers`` (visitors with an order in it)
and, over visitors with revenue R and orders O in it, ``rsq`` = Σ R², ``osq`` = Σ O², ``ro`` = Σ R·O —
what a per-visitor mean and the delta method for average order value (Σ R / Σ O) need. The visitor's
running R and O per experience and currency (``<x>|cr:<CUR>``, ``<x>|co:<CUR>``) make each order an
exact increment (``2R·v + v²``, ``2O + 1``, ``R + v·O + v``).

Dimensions
----------
Goal counters exist for ``all``, per channel and per segment of the visitor's *first exposure* (the
top segment if its score is ≥ 0.5, else ``none``), so a breakdown rate is converters / visitors of
the same population; and per UTC day: exposures and new visitors by the exposure's day, and
conversion events and *new* converters by the event's day (days sum to the totals).

Journey (CX) aggregates
-----------------------
Besides the per-experience counters, the same script keeps global ones for ``GET /v1/cx``
(:mod:`personalization.measurement.cx`), per UTC ISO week ``w`` (:func:`week_index`, of the event's or the
exposure's ``ts``) and dimension ``all`` / ``ch:<channel>`` / ``seg:<segment>``. Every event kind
and every exposure with a visitor id is *activity*; events and exposures carrying a channel say
the visitor was seen on it. An event's channel dimension is its own channel, else the visitor's
last event channel, else their first exposure's. The segment is the top segment of the visitor's
earliest exposure (``none`` before any exposure is processed; counts already made stay where they
were if an earlier exposure arrives later).

Questions such as "visitors active in weeks a..b" or "customers with ≥ 2 purchases in a..b" are
about *distinct* visitors, so weekly counts cannot just be summed. Each visitor instead contributes

* per distinct active (buying) week ``w``: a term ``act:<p>`` (``buy:<p>``) under ``w``, ``p`` =
  their previous such week or ``-``. Visitors active in [a, b] = Σ over w in [a, b] of the terms
  with p < a (the visitor's first week inside the range) — exact;
* per *minimal* interval [x, y] in which they were seen on two channels (bought twice): a week on
  ≥ 2 channels (with ≥ 2 orders) alone, or two consecutive channel-carrying (buying) weeks with one
  channel each, different (one order each): a term ``multi:<y>:<px>`` (``rep:<y>:<px>``) under x,
  ``px`` = the previous interval's x or ``-``. Intervals of one visitor increase in x and y, so
  the visitor has two channels (orders) in [a, b] iff their first interval with x ≥ a has y ≤ b:
  Σ over x in [a, b] of the terms with y ≤ b and px < a — exact;
* cohort terms ``ret:<k>`` under their first active week c, for each active week c + k
  (``ret:0`` is the cohort size).

The per-visitor weeks (``…:cx`` fields ``w:<w>``, ``…:cxb:<dim>``; under the visitor's hash tag, so
erasing the visitor removes them, while the global terms hold no visitor id) are kept, and a new
week, a new channel in a week or a week's first or second order replaces the visitor's old terms by
new ones, so the result does not depend on the order entries are processed in (a late earlier event
can move a visitor's cohort). Orders are de-duplicated by ``order_id`` as above. Only channel
*transitions* are order-dependent: one is counted (in the later event's week) when an event's
channel differs from the visitor's last event channel, and the last channel and ``ts`` are kept in
the visitor's state. Events are released in ``ts`` order within a batch, so the sequence is exact
unless an event reaches the stream after a later event of the same visitor was processed (a client
clock or a queue delay beyond ``exposure_grace_s``): such a late event counts as activity but
neither makes nor breaks a transition. Transitions come from events only (exposures are written
after the clicks they cause, so their order against events is loose).


Task durations: a ``dur_b:<i>`` bucket holds durations in ``[10^(i/50), 10^((i+1)/50))`` ms
(:data:`DURATION_BUCKETS_PER_DECADE`), so a median read from the histogram is within one bucket
(< 4.7 % relative) of the exact one. Zero durations are ignored (no log, no bucket).

The scripts
-----------
``outcome.lua`` (step 1, in the visitor's slot) applies the rules above to the visitor's state and
returns every change to a shared counter as an op ``{key, kind, field, amount}`` — ``i``
``HINCRBY``, ``z`` ``HINCRBY`` and ``HDEL`` at 0, ``f`` ``HINCRBYFLOAT``, ``s`` ``SADD`` —
grouped by the key's hash tag; ``apply.lua`` (step 2, one call per hash tag) applies those ops once.
``journey.lua`` holds the journey functions ``outcome.lua`` includes (its ``--#include`` line is
replaced by the file when the scripts are loaded, :func:`load_script`). Each file's header names
its KEYS and ARGV.
"""

from __future__ import annotations

import logging
import math
import re
import time
from importlib.resources import files

from personalization.measurement.currencies import NO_CURRENCY
from personalization.measurement.events import (
    Abandonment,
    Click,
    Conversion,
    Event,
    Feedback,
    PageView,
    Purchase,
    Survey,
    Task,
)
from personalization.measurement.ux_cx import sus_score
from personalization.types import Exposure, phase_key

__all__ = [
    "APPLY_SCRIPT",
    "DEFAULT_WINDOW_S",
    "DURATION_BUCKETS_PER_DECADE",
    "HOLDOUT_VARIANT",
    "MAX_PRE_EXPOSURE_CONVERSIONS",
    "NO_SEGMENT",
    "NO_TOUCHPOINT",
    "OUTCOME_SCRIPT",
    "PURCHASE_GOAL",
    "SEGMENT_MIN_SCORE",
    "bucket_bounds",
    "duration_bucket",
    "event_record",
    "experience_of",
    "exposure_record",
    "load_script",
    "top_segment",
    "utc_day",
    "week_index",
]

log = logging.getLogger("vary.aggregation")

DEFAULT_WINDOW_S = 7 * 86_400.0
DURATION_BUCKETS_PER_DECADE = 50
NO_SEGMENT = "none"
NO_TOUCHPOINT = "(none)"
HOLDOUT_VARIANT = "h"
PURCHASE_GOAL = "purchase"
SEGMENT_MIN_SCORE = 0.5

_SURVEY_RANGES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
_INCLUDE = "--#include "


def load_script(name: str) -> str:
    """The text of ``scripts/<name>``, with every line ``--#include <file>`` replaced by that file
    of the same folder (the one template feature the scripts use; see the module docstring)."""
    folder = files("personalization.measurement").joinpath("scripts")
    lines = []
    for line in folder.joinpath(name).read_text(encoding="utf-8").splitlines(keepends=True):
        if line.rstrip("\n").startswith(_INCLUDE):
            lines.append(folder.joinpath(line.rstrip("\n")[len(_INCLUDE) :].strip()).read_text(encoding="utf-8"))
        else:
            lines.append(line)
    return "".join(lines)


#: Step 1, the visitor's outcome (``scripts/outcome.lua`` with ``scripts/journey.lua``).
OUTCOME_SCRIPT = load_script("outcome.lua")
#: Step 2, the shared aggregates of one hash tag (``scripts/apply.lua``).
APPLY_SCRIPT = load_script("apply.lua")
#: Most conversions of one goal a visitor's pre-exposure covariate counts (the script's
#: ``max_x_conversions``, read from it so the two cannot differ).
MAX_PRE_EXPOSURE_CONVERSIONS = int(re.findall(r"^local max_x_conversions = (\d+)$", OUTCOME_SCRIPT, re.MULTILINE)[0])


_PHASE_SUFFIX = re.compile(r"@p[0-9]+$")


def experience_of(name: str) -> str:
    """The experience an aggregate name belongs to: ``hero@p2`` → ``hero``, ``hero`` → ``hero``
    (the inverse of :func:`~personalization.types.phase_key`; the script's ``experience_of``)."""
    return _PHASE_SUFFIX.sub("", name, count=1)


def top_segment(segments: dict[str, float]) -> str:
    """The visitor's top segment: highest score (ties: first name in order) if ≥ 0.5, else ``none``.

    ``|`` is replaced by ``_`` because the visitor state separates its fields with it.
    """
    if not segments:
        return NO_SEGMENT
    name, score = min(segments.items(), key=lambda item: (-item[1], item[0]))
    return name.replace("|", "_") if score >= SEGMENT_MIN_SCORE else NO_SEGMENT


def week_index(ts: float) -> int:
    """The UTC ISO week of a Unix timestamp as a number: weeks since the Monday 1969-12-29.

    A plain integer (not ``2023-W46``) so the script can subtract weeks (cohort age) and compare
    them (range queries); ISO weeks start on Monday and 1970-01-01 was a Thursday, hence the +3.
    """
    return (math.floor(ts / 86_400) + 3) // 7


_DAY_CACHE: dict[int, str] = {}


def utc_day(ts: float) -> str:
    """``YYYY-MM-DD`` of a Unix timestamp, in UTC (cached per day number)."""
    day = int(ts // 86_400)
    text = _DAY_CACHE.get(day)
    if text is None:
        text = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
        if len(_DAY_CACHE) < 10_000:
            _DAY_CACHE[day] = text
    return text


def duration_bucket(ms: float) -> int:
    """Histogram bucket of a positive duration: ``floor(50·log10(ms))`` (bucket 0 holds < 1.047 ms)."""
    return max(0, math.floor(DURATION_BUCKETS_PER_DECADE * math.log10(ms)))


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """The ms range ``[low, high)`` of a duration bucket (bucket 0 starts at 0)."""
    low = 0.0 if bucket == 0 else 10 ** (bucket / DURATION_BUCKETS_PER_DECADE)
    return low, 10 ** ((bucket + 1) / DURATION_BUCKETS_PER_DECADE)


def exposure_record(x: Exposure, window_s: float) -> list[str]:
    """What step 1 reads of an exposure, every field a string: ``'x'``, outcome field, outcome key
    and visitor key prefix (the three filled in by the caller, ``''`` when anonymous; the script
    appends suffixes to :func:`~personalization.store.keys.visitor_key_prefix` and never sees the
    raw id), experience (``''`` content; from phase 2 on the phase's name, :func:`~personalization.types.
    phase_key`), variant label (``h`` for holdout), ts, attribution deadline (ts + ``window_s``), channel, top segment,
    UTC day, entry id, ISO week."""
    experience = phase_key(x.experience, x.phase) if x.experience else ""
    deadline = x.ts + window_s if experience else x.ts
    return [
        "x", "", "", "", experience,
        HOLDOUT_VARIANT if x.holdout else str(x.variant), _num(x.ts), _num(deadline), x.channel,
        top_segment(x.segments), utc_day(x.ts), x.entry_id, str(week_index(x.ts)),
    ]


def event_record(e: Event, entry_id: str) -> list[str]:
    """What step 1 reads of an event, every field a string: ``'e'``, outcome field, outcome key and
    visitor key prefix (filled in by the caller), kind, ts (the stream id's time when the event has
    none), UTC day, touchpoint, goal (``''`` none), value (``''`` none), four kind-specific fields (purchase: order
    id, currency (``XXX`` when it has none); task: success, duration ms, ln ms, bucket; feedback: problem; survey: metric, score),
    channel, ISO week. A kind with nothing to count (``identify``, a survey without a usable score)
    becomes ``other``: still marked and acknowledged."""
    ts = e.ts if e.ts is not None else int(entry_id.split("-", 1)[0]) / 1000.0
    goal, value = "", ""
    extra = ["", "", "", ""]
    if isinstance(e, Conversion):
        kind, goal = "conversion", e.goal
        value = "" if e.value is None else _num(e.value)
    elif isinstance(e, Purchase):
        kind, goal, value = "purchase", PURCHASE_GOAL, _num(e.value)
        extra[:2] = [e.order_id, e.currency or NO_CURRENCY]
    elif isinstance(e, Task):
        kind = "task"
        extra[0] = "1" if e.success else "0"
        if e.duration_ms:  # 0 or None: no usable time
            ms = e.duration_ms
            extra[1:] = [str(ms), _num(math.log(ms)), str(duration_bucket(ms))]
    elif isinstance(e, Abandonment):
        kind = "abandonment"
    elif isinstance(e, Click):
        kind = "click"
    elif isinstance(e, PageView):
        kind = "page_view"
    elif isinstance(e, Feedback):
        kind = "feedback"
        extra[0] = e.problem or ""
    elif isinstance(e, Survey):
        score = _survey_score(e)
        if score is None:  # acknowledged and marked, but nothing to count
            log.warning("survey %s has no usable %s score; ignored", entry_id, e.metric)
            kind = "other"
        else:
            kind = "survey"
            extra[:2] = [e.metric, score]
    else:  # identify: nothing to aggregate, but the entry is still marked and acknowledged
        kind = "other"
    return [
        "e", "", "", "", kind, _num(ts), utc_day(ts),
        e.touchpoint or NO_TOUCHPOINT, goal, value, *extra, e.channel or "", str(week_index(ts)),
    ]


def _survey_score(e: Survey) -> str | None:
    """The stored score: an integer for NPS/CSAT/CES histograms (rounded half up), 0–100 for SUS."""
    if e.metric == "sus":
        if e.answers is not None:
            return _num(sus_score(e.answers))
        return None if e.score is None or not 0 <= e.score <= 100 else _num(e.score)
    if e.score is None:
        return None
    low, high = _SURVEY_RANGES[e.metric]
    score = math.floor(e.score + 0.5)
    return str(score) if low <= score <= high else None


def _num(x: float) -> str:
    return repr(float(x))

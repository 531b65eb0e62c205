"""Every Redis key Vary's personalization writes, named in one module.

Key names are stored data: a deployment upgraded in place must find what the previous version
wrote, so every string here is frozen (``tests/personalization/store/test_keys.py`` pins them).
Spelling a ``"vary:…"`` key anywhere else invites two spellings of one key; build it here instead.
(The content store keeps its own two keys in :mod:`content.store`: content does not import this
package. Lua scripts build the keys they derive from their arguments the same way; their headers
say which.)

Hash tags: everything about one visitor carries ``{<visitor id>}`` so a Redis Cluster keeps it on
one node, one script may touch all of it, and erasure finds it with one ``SCAN``; a partitioned
stream carries ``{<p>}``, and keys written atomically with a stream entry are
:func:`colocated` with it.

Per visitor
-----------
=======================================  ===========================================================
``vary:v:{<visitor>}:p``                 profile hash (:func:`profile_key`, fields in
                                         :mod:`personalization.store.profiles`)
``vary:v:{<visitor>}:e:<event id>``      marker: the event was counted in the profile
                                         (:func:`event_marker_key`)
``vary:v:{<visitor>}:agg:<day>``         hash, ``<stream>|<entry id>`` → step-1 outcome (msgpack),
                                         ``''`` once applied, ``'!'`` if it raised (dedupe; expires)
                                         (:func:`outcome_key`)
``vary:v:{<visitor>}:x``                 hash, experience → ``variant|first ts|deadline|channel|seg``
``vary:v:{<visitor>}:xf``                hash, per-visitor flags: ``<x>|c:<goal>`` converted,
                                         ``<x>|v:<goal>`` value total, ``<x>|x:<goal>`` CUPED X,
                                         ``<x>|np`` orders, ``<x>|k:<tp>`` clicked, ``o:<order>``
``vary:v:{<visitor>}:t``                 hash, goal → lifetime value total (CUPED snapshots it at
                                         first exposure as the pre-exposure value X)
``vary:v:{<visitor>}:cx``                hash, ``seg``, ``seg_ts``, ``xch`` (earliest exposure's
                                         segment, ts, channel), ``ch``, ``ts`` (last event channel),
                                         ``w:<w>`` active week → its channels (``web,ios``; ``""``)
``vary:v:{<visitor>}:cxb:<dim>``         hash, week → orders in it, per CX dimension
=======================================  ===========================================================

Streams and their markers
-------------------------
=======================================  ===========================================================
``vary:exposures`` / ``vary:events``     the streams (:data:`EXPOSURES`, :data:`EVENTS`); with
                                         ``n > 1`` partitions ``vary:exposures:{<p>}`` …
                                         (:func:`stream_name`)
``{<stream tag>}:batch:<id>``            an exposure batch's part written to that stream
                                         (:func:`batch_marker`)
``{<stream tag>}:e:<digest>``            an event appended to that stream (:func:`event_stream_marker`)
``vary:exposure:seen:<exposure id>``     a deferred exposure already claimed (:data:`EXPOSURE_SEEN_PREFIX`)
``vary:sinks:dead:<sink>``               a sink's dead letters (:func:`dead_letter_stream`)
=======================================  ===========================================================

Aggregates (``<v>`` is the variant index or ``h``; ``<x>`` an experience key)
------------------------------------------------------------------------------
=======================================  ===========================================================
``vary:agg:{<x>}:all``                   hash, ``<v>:visitors`` unique exposed visitors,
                                         ``<v>:exposures`` exposure entries, ``<v>:anonymous``,
                                         ``<v>:conv:<goal>`` unique converters,
                                         ``<v>:events:<goal>`` conversion events,
                                         ``<v>:vsum:<goal>`` / ``<v>:vsumsq:<goal>`` Σ and Σ² of
                                         per-visitor value totals, CUPED ``<v>:xsum|xsumsq|xysum:
                                         <goal>`` (pre-exposure value X), ``<v>:buyers``,
                                         ``<v>:repeat_buyers``, ``<v>:nps|csat|ces:<score>``
                                         histograms, ``variant_conflicts`` (:func:`agg_key`)
``vary:agg:{<x>}:ch:<channel>``          hash, the goal fields above for one first-exposure channel
``vary:agg:{<x>}:seg:<segment>``         hash, the same for one first-exposure top segment
``vary:agg:{<x>}:day:<YYYY-MM-DD>``      hash, the same by UTC day (new visitors/converters)
``vary:agg:{<x>}:ux:<touchpoint>``       hash, ``<v>:tasks``, ``task_ok``, ``abandoned``,
                                         ``clicks``, ``clickers`` (unique), ``page_views``,
                                         ``feedback``, ``orders``, ``revenue``, ``revenue_sq``,
                                         ``sus_n|sus_sum|sus_sumsq``, task durations
                                         ``dur_n|dur_sum|dur_sumsq|dur_lsum|dur_lsumsq`` (ms, ln ms)
                                         and ``dur_b:<i>`` log-spaced histogram buckets
``vary:agg:{<x>}:problems:<v>:<tp>``     set of distinct feedback ``problem`` tags
``vary:agg:{<x>}:dims|goals|tps``        sets indexing the dimension suffixes, goals, touchpoints
``vary:agg:experiences``                 set of experience keys with aggregates
                                         (:data:`AGG_EXPERIENCES_KEY`)
``vary:agg:content:all|day:<day>``       hash, entry id → exposures served outside experiences
``vary:agg:seen:{<tag>}:<hour>``         hash, ``<stream>|<entry id>`` → 1: step-2 markers of one
                                         hash tag (dedupe; expire) (:func:`marker_key`)
``vary:cx:{w:<w>}:all``                  hash, journey aggregates of ISO week ``<w>``: survey
                                         histograms, purchase and activity terms, cohort counters,
                                         channel transitions (:func:`cx_key`)
``vary:cx:{w:<w>}:ch:<c>|seg:<s>``       hash, the survey histograms and purchase terms of one
                                         channel / segment
``vary:cx:{idx}:weeks|dims``             sets indexing the weeks and dimensions with CX data
                                         (:data:`CX_WEEKS_KEY`, :data:`CX_DIMS_KEY`)
=======================================  ===========================================================

What the aggregate fields mean, and the rules that fill them, is written out in
:mod:`personalization.measurement.attribution`.

Elsewhere
---------
``vary:rl:{<key id>}:<route>:<second>`` API rate-limit windows (:func:`rate_limit_key`);
``vary:models:…`` the model registry (:data:`MODELS_UPDATES_CHANNEL` and the prefixes below it).
"""

from __future__ import annotations

import hashlib

__all__ = [
    "AGG_CONTENT_KEY",
    "BATCH_MARKER",
    "AGG_EXPERIENCES_KEY",
    "CX_DIMS_KEY",
    "CX_WEEKS_KEY",
    "EVENTS",
    "EXPOSURES",
    "EXPOSURE_SEEN_PREFIX",
    "MODELS_ACTIVE_KEY",
    "MODELS_CARD_PREFIX",
    "MODELS_FILE_PREFIX",
    "MODELS_INDEX_KEY",
    "MODELS_UPDATES_CHANNEL",
    "agg_key",
    "batch_marker",
    "colocated",
    "cx_key",
    "dead_letter_stream",
    "event_marker_key",
    "event_stream_marker",
    "marker_key",
    "outcome_key",
    "profile_key",
    "rate_limit_key",
    "slot_tag",
    "stream_name",
    "visitor_keys_pattern",
]

# ---------------------------------------------------------------------------------- streams

#: The exposure stream (one partition), or the base name of its partitions.
EXPOSURES = "vary:exposures"
#: The events stream (one partition), or the base name of its partitions.
EVENTS = "vary:events"


def stream_name(base: str, partition: int, partitions: int) -> str:
    """``vary:exposures`` for a single partition, ``vary:exposures:{3}`` when partitioned."""
    if partitions <= 1:
        return base
    return f"{base}:{{{partition}}}"


def slot_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: the first ``{…}`` tag's content, else the key.

    ``f"{{{slot_tag(stream)}}}:batch:{id}"`` therefore lands in the same slot as ``stream`` whether
    or not the stream name carries a tag (``{vary:exposures}:batch:…`` hashes ``vary:exposures``).
    """
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def colocated(stream: str, suffix: str) -> str:
    """A key in the same cluster slot as ``stream``: ``{<tag>}:<suffix>``."""
    return f"{{{slot_tag(stream)}}}:{suffix}"


def batch_marker(stream: str, batch_id: str) -> str:
    """The marker of one exposure batch's part bound for ``stream``, in ``stream``'s cluster slot."""
    return colocated(stream, f"batch:{batch_id}")


#: Marker key prefix of a batch written to the unpartitioned stream: ``{vary:exposures}:batch:<id>``.
BATCH_MARKER = colocated(EXPOSURES, "batch:")


def event_stream_marker(stream: str, visitor_id: str, event_id: str) -> str:
    """The stream-slot marker of one event: a BLAKE2b of visitor and event id, so no visitor id is
    stored in clear outside the visitor's own keys."""
    digest = hashlib.blake2b(f"{visitor_id}\0{event_id}".encode(), digest_size=16).hexdigest()
    return colocated(stream, f"e:{digest}")


#: Prefix of the claim of a deferred exposure id: ``vary:exposure:seen:<exposure id>``.
EXPOSURE_SEEN_PREFIX = "vary:exposure:seen:"


def dead_letter_stream(sink_name: str) -> str:
    """Where a sink's undeliverable entries go, with the reason."""
    return f"vary:sinks:dead:{sink_name}"


# ---------------------------------------------------------------------------------- visitors


def profile_key(visitor_id: str) -> str:
    """The visitor's profile hash key; ``{…}`` is the cluster hash tag."""
    return f"vary:v:{{{visitor_id}}}:p"


def event_marker_key(visitor_id: str, event_id: str) -> str:
    """The visitor-slot marker of one event id: the event was counted in the profile."""
    return f"vary:v:{{{visitor_id}}}:e:{event_id}"


def visitor_keys_pattern(visitor_id: str) -> str:
    """``SCAN MATCH`` pattern of every key of one visitor (Redis glob characters in the id escaped,
    so an id like ``a*`` matches only itself)."""
    escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in visitor_id)
    return "vary:v:{" + escaped + "}:*"


def outcome_key(visitor_id: str, entry_id: str) -> str:
    """The visitor-slot hash holding step-1 outcomes of one UTC day of entries (by stream id time):
    ``vary:v:{<visitor>}:agg:<day number>``; it expires ``dedupe_ttl_s`` after its last write."""
    return f"vary:v:{{{visitor_id}}}:agg:{_entry_ms(entry_id) // 86_400_000}"


# ---------------------------------------------------------------------------------- aggregates

#: Set of the experience keys that have aggregates.
AGG_EXPERIENCES_KEY = "vary:agg:experiences"
#: Hash of entry id → exposures served outside experiences (``…:day:<day>`` per UTC day).
AGG_CONTENT_KEY = "vary:agg:content:all"
#: Set of the week indices that have journey (CX) aggregates.
CX_WEEKS_KEY = "vary:cx:{idx}:weeks"
#: Set of the journey dimensions (``ch:<channel>``, ``seg:<segment>``) with survey or purchase data.
CX_DIMS_KEY = "vary:cx:{idx}:dims"


def agg_key(experience: str, suffix: str) -> str:
    """An aggregate key of one experience, e.g. ``agg_key("hero", "all")`` → ``vary:agg:{hero}:all``."""
    return f"vary:agg:{{{experience}}}:{suffix}"


def cx_key(week: int, dimension: str) -> str:
    """A journey aggregate hash: ``cx_key(2818, "ch:web")`` → ``vary:cx:{w:2818}:ch:web``."""
    return f"vary:cx:{{w:{week}}}:{dimension}"


def marker_key(tag: str, entry_id: str) -> str:
    """The step-2 marker hash of one hash tag and hour of entries: ``vary:agg:seen:{<tag>}:<hour>``."""
    return f"vary:agg:seen:{{{tag}}}:{_entry_ms(entry_id) // 3_600_000}"


# ---------------------------------------------------------------------------------- elsewhere


def rate_limit_key(key_id: str, route: str, window: int) -> str:
    """One API key's count in one route class and one-second window."""
    return f"vary:rl:{{{key_id}}}:{route}:{window}"


#: Channel announcing ``<slot> <version>`` after every model activation.
MODELS_UPDATES_CHANNEL = "vary:models:updates"
#: ``vary:models:file:<version>``: the skops bytes of one model.
MODELS_FILE_PREFIX = "vary:models:file:"
#: ``vary:models:card:<version>``: its card (msgspec JSON).
MODELS_CARD_PREFIX = "vary:models:card:"
#: Sorted set of model versions by ``created_at``.
MODELS_INDEX_KEY = "vary:models:index"
#: Hash of slot → active version.
MODELS_ACTIVE_KEY = "vary:models:active"


def _entry_ms(entry_id: str) -> int:
    """The milliseconds part of a stream entry id (``<ms>-<seq>``)."""
    return int(entry_id.split("-", 1)[0])

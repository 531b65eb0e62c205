"""Every Redis key Vary's personalization writes, named in one module.

Key names are stored data: a deployment upgraded in place must find what the previous version
wrote, so every string here is frozen (``tests/personalization/store/test_keys.py`` pins them); a
change of layout bumps :data:`SCHEMA_VERSION` and ships its migration
(:mod:`personalization.store.migrate`).
Spelling a ``"vary:…"`` key anywhere else invites two spellings of one key; build it here instead.
(The content store keeps its own two keys in :mod:`content.store`: content does not import this
package. Lua scripts build the keys they derive from their arguments the same way; their headers
say which.)

Hash tags: everything about one visitor carries ``{<visitor tag>}``, where the tag is
:func:`visitor_tag`, a fixed-length hex digest of the visitor id: a Redis Cluster keeps all of it
on one node, one script may touch all of it, and erasure finds it with one ``SCAN``. The id itself
never goes into a key: an id holding ``{`` or ``}`` (``}lead-brace``) would otherwise move the
cluster's hash tag and scatter one visitor over several slots, ``*``/``?``/``[`` would be glob
characters to ``SCAN MATCH``, and ``kv-alice`` would be a prefix of ``kv-alice}:x``. Keys written
by versions before schema 2 spelled the raw id (``vary:v:{<visitor id>}:…``);
:mod:`personalization.store.migrate` renames them once. A partitioned stream carries ``{<p>}``,
and keys written atomically with a stream entry are :func:`colocated` with it.

Per visitor (``<vt>`` is :func:`visitor_tag` of the visitor id)
---------------------------------------------------------------
=======================================  ===========================================================
``vary:vh:{<vt>}:p``                     profile hash (:func:`profile_key`, fields in
                                         :mod:`personalization.store.profiles`)
``vary:vh:{<vt>}:h``                     hash, bounded page and event history: ``p:<url>`` /
                                         ``e:<event>`` → ``"<count> <ts> …"`` (:func:`history_key`,
                                         :mod:`personalization.store.visitor_history`)
``vary:vh:{<vt>}:tr``                    hash, trait name → its JSON value (≤ 100 traits, 8 KB;
                                         :func:`traits_key`, :mod:`personalization.store.traits`)
``vary:vh:{<vt>}:sv``                    hash, survey state: ``last`` (any survey shown), ``s:<survey>``
                                         / ``n:<survey>`` last shown and showings, ``t:<trigger>``
                                         last fired (:func:`survey_state_key`,
                                         :mod:`personalization.store.surveys`)
``vary:vh:{<vt>}:e:<event id>``          marker: the event was counted in the profile
                                         (:func:`event_marker_key`)
``vary:vh:{<vt>}:agg:<day>``             hash, ``<stream>|<entry id>`` → step-1 outcome (msgpack),
                                         ``''`` once applied, ``'!'`` if it raised (dedupe; expires)
                                         (:func:`outcome_key`)
``vary:vh:{<vt>}:x``                     hash, experience → ``variant|first ts|deadline|channel|seg``
``vary:vh:{<vt>}:xf``                    hash, per-visitor flags: ``<x>|c:<goal>`` converted,
                                         ``<x>|v:<goal>`` value total, ``<x>|x:<goal>`` CUPED X,
                                         ``<x>|xn:<goal>`` conversions before, ``<x>|ret``
                                         returning, ``<x>|cr|co:<CUR>`` revenue, orders in a
                                         currency, ``<x>|np`` orders, ``<x>|k:<tp>`` clicked,
                                         ``o:<order>``
``vary:vh:{<vt>}:t``                     hash, goal → lifetime value total, ``n:<goal>`` → lifetime
                                         conversions (≤ 100); CUPED snapshots both at first
                                         exposure as the pre-exposure X
``vary:vh:{<vt>}:cx``                    hash, ``seg``, ``seg_ts``, ``xch`` (earliest exposure's
                                         segment, ts, channel), ``ch``, ``ts`` (last event channel),
                                         ``w:<w>`` active week → its channels (``web,ios``; ``""``)
``vary:vh:{<vt>}:cxb:<dim>``             hash, week → orders in it, per CX dimension
``vary:vh:{<vt>}:ids``                   of a person (:mod:`personalization.store.identity`): hash,
                                         linked id → ``0`` reserved / ``1`` merged (≤ 50 ids)
                                         (:func:`person_ids_key`); the profile hash of a linked id
                                         holds ``person`` → its person id, the person's ``user`` →
                                         its user id, ``as:<x>`` / ``tt:<trait>`` merge ranks
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
``vary:sinks:erasures``                  erase notices for every sink (:data:`SINK_ERASURES`): the
                                         erased visitor id, until every sink's group delivered it
``vary:sinks:guardrails``                guardrail pauses for every sink (:data:`SINK_GUARDRAILS`;
                                         no visitor data; capped)
=======================================  ===========================================================

Aggregates (``<v>`` is the variant index or ``h``; ``<x>`` an experience key, or from phase 2 on
the phase's name ``<key>@p<n>`` (:func:`~personalization.types.phase_key`), aggregated apart)
------------------------------------------------------------------------------------------------
=======================================  ===========================================================
``vary:agg:{<x>}:all``                   hash, ``<v>:visitors`` unique exposed visitors,
                                         ``<v>:exposures`` exposure entries, ``<v>:anonymous``,
                                         ``<v>:conv:<goal>`` unique converters,
                                         ``<v>:events:<goal>`` conversion events,
                                         ``<v>:vsum:<goal>`` / ``<v>:vsumsq:<goal>`` Σ and Σ² of
                                         per-visitor value totals, CUPED ``<v>:xsum|xsumsq|xysum:
                                         <goal>`` (pre-exposure value X), CUPED on conversions
                                         ``<v>:xcsum|xcsumsq|xcysum:<goal>`` (X = conversions
                                         before first exposure, Y = converted), ``<v>:returning``
                                         (exposed on ≥ 2 UTC days), ``<v>:buyers``,
                                         ``<v>:repeat_buyers``, per ISO 4217 currency (``XXX``
                                         none) ``<v>:cur:<CUR>:orders|revenue|buyers|rsq|osq|ro``
                                         (Σ over visitors of R, O, 1, R², O², R·O),
                                         ``<v>:nps|csat|ces:<score>``
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
``vary:models:…`` the model registry (:data:`MODELS_UPDATES_CHANNEL` and the prefixes below it);
``vary:models:shadow`` hash, experience key → the policy version in shadow (:data:`MODELS_SHADOW_KEY`);
``vary:models:gate:<version>`` hash, ``verdict`` → the launch gate's JSON verdict, ``forced`` → JSON
``{"by", "at", "status"}`` of a forced activation (:data:`MODELS_GATE_PREFIX`);
``vary:person:{<ut>}`` the person id of one ``user_id`` (``<ut>``: BLAKE2b of ``"user\\0" + user_id``;
:func:`person_index_key`, :mod:`personalization.store.identity`);
``vary:schema`` the stored-data layout version (:data:`SCHEMA_KEY`, :data:`SCHEMA_VERSION`);
``vary:agg:dead`` entries the aggregation could not process (:data:`AGG_DEAD_LETTERS`: stream,
entry id and error, no visitor data; capped);
``vary:guardrail:paused`` hash, experience key → JSON ``{"<variant>": {"reason", "metric", "at",
"phase"}}``: the variants a guardrail paused (:data:`GUARDRAIL_PAUSES_KEY`);
``vary:guardrail:resumed`` hash, ``<experience>@p<phase>:<variant>:<metric>`` → resumed-at: pauses a
person lifted, not re-applied by the same guardrail in the same phase (:data:`GUARDRAIL_RESUMED_KEY`);
``vary:phases:{<x>}`` hash of one experience's phases: field ``<n>`` → JSON ``{"phase", "fingerprint",
"started_at", "updated_at", "changes"}``, field ``current`` → n (:func:`phases_key`);
``vary:dash:{sessions}:s:<id>`` / ``…:generation`` dashboard sessions and their sign-out-everywhere
generation (:func:`dashboard_session_key`, :data:`DASHBOARD_GENERATION_KEY`; one tag, one ``MGET``).
"""

from __future__ import annotations

import functools
import hashlib

__all__ = [
    "GUARDRAIL_PAUSES_KEY",
    "GUARDRAIL_RESUMED_KEY",
    "phases_key",
    "AGG_CONTENT_KEY",
    "AGG_DEAD_LETTERS",
    "BATCH_MARKER",
    "AGG_EXPERIENCES_KEY",
    "CX_DIMS_KEY",
    "CX_WEEKS_KEY",
    "EVENTS",
    "EXPOSURES",
    "EXPOSURE_SEEN_PREFIX",
    "LEGACY_VISITOR_PATTERN",
    "MODELS_ACTIVE_KEY",
    "MODELS_CARD_PREFIX",
    "MODELS_FILE_PREFIX",
    "MODELS_INDEX_KEY",
    "MODELS_UPDATES_CHANNEL",
    "MODELS_SHADOW_KEY",
    "MODELS_GATE_PREFIX",
    "DASHBOARD_GENERATION_KEY",
    "dashboard_session_key",
    "SCHEMA_KEY",
    "SINK_ERASURES",
    "SINK_GUARDRAILS",
    "SCHEMA_VERSION",
    "VISITOR_PREFIX",
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
    "history_key",
    "traits_key",
    "survey_state_key",
    "person_ids_key",
    "person_index_key",
    "rate_limit_key",
    "slot_tag",
    "stream_name",
    "visitor_key_prefix",
    "visitor_keys_pattern",
    "visitor_tag",
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


#: Stream of erase notices (``DELETE /v1/visitors/{id}``) every sink delivers, so receivers delete too.
SINK_ERASURES = "vary:sinks:erasures"
#: Stream of guardrail pauses every sink delivers (``kind="guardrail_paused"``).
SINK_GUARDRAILS = "vary:sinks:guardrails"


# ---------------------------------------------------------------------------------- visitors


#: Every per-visitor key starts with this (then ``{<visitor tag>}:``).
VISITOR_PREFIX = "vary:vh:"
#: ``SCAN MATCH`` of the schema-1 per-visitor keys, ``vary:v:{<raw visitor id>}:…`` (read only by
#: :mod:`personalization.store.migrate`, which renames them; nothing writes them any more).
LEGACY_VISITOR_PATTERN = "vary:v:{*"


def visitor_tag(visitor_id: str) -> str:
    """The cluster hash tag of one visitor: the hex BLAKE2b-128 of the id's UTF-8 bytes (a lone
    surrogate, which JSON can carry, passes through rather than raising). Fixed length, hex only:
    whatever the id holds, it cannot open or close a tag, glob in ``SCAN``, or prefix another's."""
    data = visitor_id.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@functools.lru_cache(maxsize=4096)
def visitor_key_prefix(visitor_id: str) -> str:
    """``vary:vh:{<visitor tag>}:`` — every key of the visitor is this plus a suffix (the Lua scripts
    receive it ready-made and only append suffixes).

    Remembered for the last 4,096 ids: one personalize request builds its visitor's keys about nine
    times (three profile reads, the trait merge, each exposure's frequency counter and sticky
    assignment), and a BLAKE2b digest per call was 2 % of the request's CPU (issue 22)."""
    return f"{VISITOR_PREFIX}{{{visitor_tag(visitor_id)}}}:"


def profile_key(visitor_id: str) -> str:
    """The visitor's profile hash key."""
    return visitor_key_prefix(visitor_id) + "p"


def history_key(visitor_id: str) -> str:
    """The visitor's bounded page and event history hash (:mod:`personalization.store.visitor_history`)."""
    return visitor_key_prefix(visitor_id) + "h"


def survey_state_key(visitor_id: str) -> str:
    """The person's survey state hash (:mod:`personalization.store.surveys`): last survey shown,
    per-survey showings, the survey triggers that fired."""
    return visitor_key_prefix(visitor_id) + "sv"


def traits_key(visitor_id: str) -> str:
    """The visitor's stored traits hash (:mod:`personalization.store.traits`)."""
    return visitor_key_prefix(visitor_id) + "tr"


def person_ids_key(person_id: str) -> str:
    """A person's linked ids (a hash in the person's slot, :mod:`personalization.store.identity`)."""
    return visitor_key_prefix(person_id) + "ids"


def person_index_key(user_id: str) -> str:
    """The key holding the person id of ``user_id``: its own tag (a digest, as for visitors, but
    domain-separated so no visitor id's keys can be it)."""
    data = b"user\0" + user_id.encode("utf-8", "surrogatepass")
    return f"vary:person:{{{hashlib.blake2b(data, digest_size=16).hexdigest()}}}"


def event_marker_key(visitor_id: str, event_id: str) -> str:
    """The visitor-slot marker of one event id: the event was counted in the profile."""
    return f"{visitor_key_prefix(visitor_id)}e:{event_id}"


def visitor_keys_pattern(visitor_id: str) -> str:
    """``SCAN MATCH`` pattern of every key of one visitor (the tag is hex: nothing in it to escape,
    and its closing ``}`` ends it, so no other visitor's keys match)."""
    return visitor_key_prefix(visitor_id) + "*"


def outcome_key(visitor_id: str, entry_id: str) -> str:
    """The visitor-slot hash holding step-1 outcomes of one UTC day of entries (by stream id time):
    ``vary:vh:{<visitor tag>}:agg:<day number>``; it expires ``dedupe_ttl_s`` after its last write."""
    return f"{visitor_key_prefix(visitor_id)}agg:{_entry_ms(entry_id) // 86_400_000}"


# ---------------------------------------------------------------------------------- aggregates

#: Set of the experience keys that have aggregates.
AGG_EXPERIENCES_KEY = "vary:agg:experiences"
#: Hash of entry id → exposures served outside experiences (``…:day:<day>`` per UTC day).
AGG_CONTENT_KEY = "vary:agg:content:all"
#: Capped stream of entries the aggregation could not process: ``stream``, ``id``, ``error``.
AGG_DEAD_LETTERS = "vary:agg:dead"
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
#: Hash of bandit experience key → the policy version running in shadow beside its live one.
MODELS_SHADOW_KEY = "vary:models:shadow"
#: ``vary:models:gate:<version>``: hash of a policy's launch gate, fields ``verdict`` (JSON) and ``forced``.
MODELS_GATE_PREFIX = "vary:models:gate:"

#: The dashboard's sign-out-everywhere counter: a session signed in under an older value is over.
DASHBOARD_GENERATION_KEY = "vary:dash:{sessions}:generation"


def dashboard_session_key(session_id: str) -> str:
    """One signed-in dashboard session (its value: the generation it began in; it expires with the
    session). Shares :data:`DASHBOARD_GENERATION_KEY`'s hash tag so both are read in one ``MGET``."""
    return f"vary:dash:{{sessions}}:s:{session_id}"


#: Hash of experience key → JSON of its guardrail-paused variants (one HGETALL refreshes every worker).
GUARDRAIL_PAUSES_KEY = "vary:guardrail:paused"
#: Hash of ``<phase key>:<variant>:<metric>`` → epoch s when a person resumed that pause.
GUARDRAIL_RESUMED_KEY = "vary:guardrail:resumed"


def phases_key(experience: str) -> str:
    """The hash of one experience's phases (``vary:phases:{<x>}``; one slot, so a Lua script can
    append a phase atomically)."""
    return f"vary:phases:{{{experience}}}"


#: The stored-data layout version (an integer string); absent means 1, the layout before
#: :data:`SCHEMA_VERSION` 2 hashed visitor ids into their tags.
SCHEMA_KEY = "vary:schema"
SCHEMA_VERSION = 2


def _entry_ms(entry_id: str) -> int:
    """The milliseconds part of a stream entry id (``<ms>-<seq>``)."""
    return int(entry_id.split("-", 1)[0])

"""Key names are stored data: these are the exact strings earlier versions wrote (pinned by hand,
not computed from the builders), so a deployment upgraded in place finds what it stored."""

from __future__ import annotations

import hashlib

from personalization.store import keys


def test_visitor_keys() -> None:
    assert keys.profile_key("v1") == "vary:v:{v1}:p"
    assert keys.event_marker_key("v1", "e-7") == "vary:v:{v1}:e:e-7"
    assert keys.outcome_key("v1", "1700000000123-4") == "vary:v:{v1}:agg:19675"
    assert keys.visitor_keys_pattern("v1") == "vary:v:{v1}:*"
    assert keys.visitor_keys_pattern("a*b?[c]") == "vary:v:{a\\*b\\?\\[c\\]}:*"


def test_stream_names_with_and_without_partitions() -> None:
    assert keys.EXPOSURES == "vary:exposures"
    assert keys.EVENTS == "vary:events"
    assert keys.stream_name(keys.EXPOSURES, 0, 1) == "vary:exposures"
    assert keys.stream_name(keys.EXPOSURES, 3, 4) == "vary:exposures:{3}"
    assert keys.stream_name(keys.EVENTS, 0, 2) == "vary:events:{0}"


def test_stream_markers_share_the_stream_slot() -> None:
    assert keys.slot_tag("vary:exposures") == "vary:exposures"
    assert keys.slot_tag("vary:exposures:{3}") == "3"
    assert keys.batch_marker("vary:exposures", "b1") == "{vary:exposures}:batch:b1"
    assert keys.batch_marker("vary:exposures:{3}", "b1") == "{3}:batch:b1"
    assert keys.BATCH_MARKER == "{vary:exposures}:batch:"
    assert keys.event_stream_marker("vary:events", "v1", "e1") == (
        "{vary:events}:e:" + hashlib.blake2b(b"v1\0e1", digest_size=16).hexdigest()
    )
    assert keys.EXPOSURE_SEEN_PREFIX + "x1" == "vary:exposure:seen:x1"
    assert keys.dead_letter_stream("webhook") == "vary:sinks:dead:webhook"


def test_aggregate_keys() -> None:
    assert keys.agg_key("hero", "all") == "vary:agg:{hero}:all"
    assert keys.agg_key("hero", "day:2023-11-14") == "vary:agg:{hero}:day:2023-11-14"
    assert keys.cx_key(2818, "ch:web") == "vary:cx:{w:2818}:ch:web"
    assert keys.CX_WEEKS_KEY == "vary:cx:{idx}:weeks"
    assert keys.CX_DIMS_KEY == "vary:cx:{idx}:dims"
    assert keys.AGG_EXPERIENCES_KEY == "vary:agg:experiences"
    assert keys.AGG_CONTENT_KEY == "vary:agg:content:all"
    assert keys.marker_key("hero", "1700000000123-0") == "vary:agg:seen:{hero}:472222"


def test_rate_limits_and_model_registry() -> None:
    assert keys.rate_limit_key("k1", "delivery", 1700000000) == "vary:rl:{k1}:delivery:1700000000"
    assert keys.MODELS_UPDATES_CHANNEL == "vary:models:updates"
    assert keys.MODELS_FILE_PREFIX + "v3" == "vary:models:file:v3"
    assert keys.MODELS_CARD_PREFIX + "v3" == "vary:models:card:v3"
    assert keys.MODELS_INDEX_KEY == "vary:models:index"
    assert keys.MODELS_ACTIVE_KEY == "vary:models:active"

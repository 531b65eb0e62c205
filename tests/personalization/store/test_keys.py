"""Key names are stored data: these are the exact strings earlier versions wrote (pinned by hand,
not computed from the builders), so a deployment upgraded in place finds what it stored."""

from __future__ import annotations

import hashlib

from personalization.store import keys


def test_visitor_keys() -> None:
    """Schema 2: the hash tag is the BLAKE2b-128 hex of the id, never the id (the schema-1 strings
    ``vary:v:{v1}:p`` … are what :mod:`personalization.store.migrate` renames)."""
    v1 = "32813478dd927a4c2415bc5464568e9d"
    assert hashlib.blake2b(b"v1", digest_size=16).hexdigest() == v1
    assert keys.visitor_tag("v1") == v1
    assert keys.profile_key("v1") == "vary:vh:{" + v1 + "}:p"
    assert keys.event_marker_key("v1", "e-7") == "vary:vh:{" + v1 + "}:e:e-7"
    assert keys.outcome_key("v1", "1700000000123-4") == "vary:vh:{" + v1 + "}:agg:19675"
    assert keys.visitor_key_prefix("v1") == "vary:vh:{" + v1 + "}:"
    assert keys.visitor_keys_pattern("v1") == "vary:vh:{" + v1 + "}:*"
    assert keys.SCHEMA_KEY == "vary:schema" and keys.SCHEMA_VERSION == 2
    assert keys.AGG_DEAD_LETTERS == "vary:agg:dead"
    assert keys.LEGACY_VISITOR_PATTERN == "vary:v:{*"


HOSTILE_IDS = {
    "}lead-brace": "b0193ee870360e36866df69af8199c8f",
    "a*b?[c]": "26c64e156ab4b704b4bb70dee5115aff",
    "kv-alice": "1e76bbe5c5b57a26c82853c765adae6b",
    "kv-alice}:x": "07404c5460d4ec1ad0978273385f50b4",
    "vis:{x}:y": "b876cac72f9e11e9d2303f10428eefaf",
    "x" * 256: "0b2c2b0de02938ad7a728b51e8da3357",
    "visiteur-é-🙂": "8ac30be4f94ca7bba93f5c97364ee786",
    "\ud800": "b4fe3de0239399efbfffc79686f435f9",  # a lone surrogate (JSON can carry one)
}


def test_hostile_visitor_ids_keep_one_slot_and_never_match_another() -> None:
    """Braces, colons, glob characters, 256 characters, unicode: every key of the visitor has the
    same cluster slot, the tag is 32 hex characters, and one visitor's SCAN pattern matches none
    of another's keys (``kv-alice`` vs ``kv-alice}:x`` was a prefix match with the raw id)."""
    import fnmatch

    from redis.crc import key_slot

    for visitor, tag in HOSTILE_IDS.items():
        assert keys.visitor_tag(visitor) == tag
        own = [
            keys.profile_key(visitor), keys.event_marker_key(visitor, "}{*"), keys.outcome_key(visitor, "1-0"),
            keys.visitor_key_prefix(visitor) + "cxb:ch:web",
        ]
        assert {keys.slot_tag(k) for k in own} == {tag}
        assert len({key_slot(k.encode("utf-8", "surrogatepass")) for k in own}) == 1
        for other in HOSTILE_IDS:
            pattern = keys.visitor_keys_pattern(other)
            matches = [fnmatch.fnmatchcase(k, pattern) for k in own]
            assert all(matches) if other == visitor else not any(matches), (visitor, other)


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

"""Contentful webhook signing and parsing (content/webhooks.py).

The signature test vector comes from ``reference/contentful.md`` and is checked three ways: our
signer, our verifier, and a plain HMAC over the canonical string written out by hand.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

import content.webhooks as webhooks
from content.webhooks import (
    ACCEPTED_TOPICS,
    WebhookEvent,
    WebhookPayloadError,
    WebhookSignatureError,
    canonical_request,
    is_content_change,
    parse_webhook,
    sign_request,
    verify_request,
)

SECRET = "a" * 64
PATH = "/webhook"
TIMESTAMP = 1_700_000_000_000
BODY = b'{"sys":{"id":"abc","type":"Entry"}}'
HEADERS = {
    "content-type": "application/vnd.contentful.management.v1+json",
    "x-contentful-topic": "ContentManagement.Entry.publish",
}
SIGNED = ["content-type", "x-contentful-signed-headers", "x-contentful-timestamp", "x-contentful-topic"]
EXPECTED = "b27ff387b8385255c02a3580db93844382541d7e6e593ab09c5d6a390a86229f"
SIGNED_LIST = ",".join(SIGNED)


def _signed_request() -> dict[str, str]:
    """The test vector's request as Contentful sends it."""
    return {
        **HEADERS,
        "x-contentful-signature": EXPECTED,
        "x-contentful-signed-headers": SIGNED_LIST,
        "x-contentful-timestamp": str(TIMESTAMP),
        "x-contentful-webhook-name": "Vary",  # not signed
    }


def _verify(headers: dict[str, str], *, method: str = "POST", path: str = PATH, body: bytes = BODY,
            now_ms: int = TIMESTAMP + 1_000, ttl_s: int = 30) -> None:
    verify_request(SECRET, method, path, headers, body, now_ms=now_ms, ttl_s=ttl_s)


# --- the test vector -------------------------------------------------------------------------------


def test_canonical_request_is_the_documented_string() -> None:
    headers = {**HEADERS, "x-contentful-signed-headers": SIGNED_LIST, "x-contentful-timestamp": str(TIMESTAMP)}
    assert canonical_request("POST", PATH, headers, BODY, SIGNED) == (
        "POST\n/webhook\n"
        "content-type:application/vnd.contentful.management.v1+json;"
        f"x-contentful-signed-headers:{SIGNED_LIST};"
        "x-contentful-timestamp:1700000000000;"
        "x-contentful-topic:ContentManagement.Entry.publish\n"
        '{"sys":{"id":"abc","type":"Entry"}}'
    )


def test_test_vector_by_hand() -> None:
    canonical = (
        "POST\n/webhook\ncontent-type:application/vnd.contentful.management.v1+json;"
        f"x-contentful-signed-headers:{SIGNED_LIST};x-contentful-timestamp:1700000000000;"
        "x-contentful-topic:ContentManagement.Entry.publish\n" + BODY.decode()
    )
    assert hmac.new(SECRET.encode(), canonical.encode(), hashlib.sha256).hexdigest() == EXPECTED


def test_sign_request_reproduces_the_test_vector() -> None:
    added = sign_request(SECRET, "POST", PATH, HEADERS, BODY, TIMESTAMP, signed_headers=SIGNED)
    assert added == {
        "x-contentful-signature": EXPECTED,
        "x-contentful-signed-headers": SIGNED_LIST,
        "x-contentful-timestamp": "1700000000000",
    }


def test_sign_request_signs_all_given_headers_by_default() -> None:
    assert sign_request(SECRET, "POST", PATH, HEADERS, BODY, TIMESTAMP)["x-contentful-signature"] == EXPECTED


def test_verify_request_accepts_the_test_vector() -> None:
    _verify(_signed_request())


def test_sign_then_verify_round_trip_with_a_query_string() -> None:
    headers = {"Content-Type": "application/json", "X-Custom": " padded "}
    body = "{\"sys\":{\"id\":\"é\"}}".encode()
    added = sign_request(SECRET, "PUT", "/hook?space=s1&x=1", headers, body, TIMESTAMP)
    verify_request(SECRET, "PUT", "/hook?space=s1&x=1", {**headers, **added}, body, now_ms=TIMESTAMP)
    with pytest.raises(WebhookSignatureError, match="signature does not match"):
        verify_request(SECRET, "PUT", "/hook?x=1&space=s1", {**headers, **added}, body, now_ms=TIMESTAMP)


def test_a_body_that_is_not_utf8_is_signed_byte_for_byte() -> None:
    body = b"\xff\xfe not utf-8"
    added = sign_request(SECRET, "POST", PATH, HEADERS, body, TIMESTAMP)
    _verify({**HEADERS, **added}, body=body)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        _verify({**HEADERS, **added}, body=b"\xff\xfd not utf-8")


# --- tampering ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("body", b'{"sys":{"id":"abd","type":"Entry"}}'),
        ("body", BODY + b" "),
        ("path", "/webhook2"),
        ("path", "/webhook?x=1"),
        ("method", "PUT"),
        ("topic", "ContentManagement.Entry.unpublish"),
        ("content-type", "application/json"),
        ("timestamp", str(TIMESTAMP + 1)),
        ("signed-headers", "content-type,x-contentful-signed-headers,x-contentful-timestamp"),
        ("signature", "0" * 64),
    ],
)
def test_tampered_requests_do_not_match(change: str, value: object) -> None:
    headers = _signed_request()
    kwargs: dict[str, object] = {}
    if change in ("body", "path", "method"):
        kwargs[change] = value
    elif change in ("topic", "content-type"):
        headers["content-type" if change == "content-type" else "x-contentful-topic"] = str(value)
    else:
        headers[f"x-contentful-{change}"] = str(value)
    with pytest.raises(WebhookSignatureError, match="^signature does not match$"):
        _verify(headers, **kwargs)  # type: ignore[arg-type]


def test_wrong_secret_does_not_match() -> None:
    with pytest.raises(WebhookSignatureError, match="signature does not match"):
        verify_request("b" * 64, "POST", PATH, _signed_request(), BODY, now_ms=TIMESTAMP)


def test_unsigned_headers_may_change() -> None:
    headers = {**_signed_request(), "x-contentful-webhook-name": "Renamed", "user-agent": "Contentful"}
    _verify(headers)


def test_an_empty_secret_is_a_configuration_error_not_a_bad_request() -> None:
    with pytest.raises(ValueError, match="secret is empty") as caught:
        verify_request("", "POST", PATH, _signed_request(), BODY, now_ms=TIMESTAMP)
    assert not isinstance(caught.value, WebhookSignatureError)


# --- time to live ------------------------------------------------------------------------------------


@pytest.mark.parametrize("age_ms", [0, 1, 29_999, -1, -30_000])
def test_fresh_requests_pass(age_ms: int) -> None:
    _verify(_signed_request(), now_ms=TIMESTAMP + age_ms)


def test_a_request_exactly_ttl_old_is_expired() -> None:
    with pytest.raises(WebhookSignatureError, match="^request is 30 s old; the limit is 30 s$"):
        _verify(_signed_request(), now_ms=TIMESTAMP + 30_000)


def test_an_old_request_says_how_old() -> None:
    with pytest.raises(WebhookSignatureError, match="^request is 45 s old; the limit is 30 s$"):
        _verify(_signed_request(), now_ms=TIMESTAMP + 45_000)


def test_a_request_from_the_future_is_refused() -> None:
    with pytest.raises(WebhookSignatureError, match="31 s in the future; the limit is 30 s"):
        _verify(_signed_request(), now_ms=TIMESTAMP - 31_000)


def test_ttl_applies_as_given_and_zero_turns_it_off() -> None:
    with pytest.raises(WebhookSignatureError, match="the limit is 5 s"):
        _verify(_signed_request(), now_ms=TIMESTAMP + 5_000, ttl_s=5)
    _verify(_signed_request(), now_ms=TIMESTAMP + 10**9, ttl_s=0)
    with pytest.raises(ValueError, match="ttl_s"):
        _verify(_signed_request(), ttl_s=-1)


# --- missing and malformed headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", ["x-contentful-signature", "x-contentful-signed-headers", "x-contentful-timestamp"]
)
def test_missing_signing_headers(header: str) -> None:
    headers = _signed_request()
    del headers[header]
    with pytest.raises(WebhookSignatureError, match=f"^missing {header} header$"):
        _verify(headers)


def test_an_unsigned_request_says_the_signature_is_missing() -> None:
    with pytest.raises(WebhookSignatureError, match="missing x-contentful-signature header"):
        _verify(dict(HEADERS))


def test_signed_headers_must_include_the_timestamp() -> None:
    headers = {**_signed_request(), "x-contentful-signed-headers": "content-type,x-contentful-signed-headers"}
    with pytest.raises(WebhookSignatureError, match="^signed headers must include x-contentful-timestamp$"):
        _verify(headers)


def test_signed_headers_must_include_themselves() -> None:
    headers = {**_signed_request(), "x-contentful-signed-headers": "content-type,x-contentful-timestamp"}
    with pytest.raises(WebhookSignatureError, match="must include x-contentful-signed-headers"):
        _verify(headers)


def test_a_signed_header_missing_from_the_request() -> None:
    headers = _signed_request()
    del headers["x-contentful-topic"]
    with pytest.raises(WebhookSignatureError, match="signed header x-contentful-topic is missing"):
        _verify(headers)


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("x-contentful-signature", "xyz", "not 64 hex digits"),
        ("x-contentful-signature", "g" * 64, "not 64 hex digits"),
        ("x-contentful-timestamp", "yesterday", "not a Unix time in milliseconds"),
    ],
)
def test_malformed_signing_headers(header: str, value: str, message: str) -> None:
    with pytest.raises(WebhookSignatureError, match=message):
        _verify({**_signed_request(), header: value})


def test_header_names_are_case_insensitive_and_trimmed() -> None:
    headers = {
        "Content-Type": HEADERS["content-type"],
        "X-Contentful-Topic": HEADERS["x-contentful-topic"],
        "  X-CONTENTFUL-SIGNATURE ": EXPECTED.upper(),
        "X-Contentful-Signed-Headers": SIGNED_LIST,  # a signed value: only its name may change case
        "x-contentful-TIMESTAMP": f" {TIMESTAMP} ",
    }
    _verify(headers)


# --- payloads ----------------------------------------------------------------------------------------


def _link(link_type: str, link_id: str) -> dict[str, object]:
    return {"sys": {"type": "Link", "linkType": link_type, "id": link_id}}


ENTRY_PUBLISH = {  # what Contentful sends on publish: the entity in management format
    "metadata": {"tags": []},
    "sys": {
        "type": "Entry", "id": "newsletterCopy",
        "space": _link("Space", "varydemo0001"), "environment": _link("Environment", "master"),
        "contentType": _link("ContentType", "varyExperience"),
        "createdBy": _link("User", "u1"), "updatedBy": _link("User", "u1"),
        "revision": 3, "version": 7, "publishedVersion": 6, "publishedCounter": 3,
        "createdAt": "2025-03-03T09:12:41.318Z", "updatedAt": "2025-05-12T14:05:27.904Z",
        "firstPublishedAt": "2025-03-03T09:12:41.318Z", "publishedAt": "2025-05-12T14:05:27.904Z",
    },
    "fields": {"name": {"en-US": "Newsletter copy"}, "trafficAllocation": {"en-US": 1.0}},
}
ENTRY_TOMBSTONE = {  # unpublish and delete send a DeletedEntry
    "sys": {
        "type": "DeletedEntry", "id": "bannerNewsletterDiscount",
        "space": _link("Space", "varydemo0001"), "environment": _link("Environment", "staging"),
        "contentType": _link("ContentType", "banner"),
        "revision": 4, "createdAt": "2025-05-13T08:00:00.000Z", "updatedAt": "2025-05-13T08:00:00.000Z",
        "deletedAt": "2025-05-13T08:00:00.000Z",
    },
}
ASSET_TOMBSTONE = {
    "sys": {"type": "DeletedAsset", "id": "heroImage", "space": _link("Space", "varydemo0001"),
            "deletedAt": "2025-05-13T08:00:00.000Z"},
}


def _body(payload: object) -> bytes:
    return json.dumps(payload).encode()


def test_parse_entry_publish() -> None:
    event = parse_webhook("ContentManagement.Entry.publish", _body(ENTRY_PUBLISH))
    assert event == WebhookEvent(
        topic="ContentManagement.Entry.publish", entity="Entry", action="publish",
        entity_id="newsletterCopy", content_type="varyExperience",
        space_id="varydemo0001", environment_id="master",
    )
    assert is_content_change(event)


@pytest.mark.parametrize("action", ["unpublish", "delete"])
def test_parse_entry_tombstones(action: str) -> None:
    event = parse_webhook(f"ContentManagement.Entry.{action}", _body(ENTRY_TOMBSTONE))
    assert (event.entity, event.action, event.entity_id) == ("Entry", action, "bannerNewsletterDiscount")
    assert (event.content_type, event.environment_id) == ("banner", "staging")
    assert is_content_change(event)


def test_parse_asset_delete_has_no_content_type() -> None:
    event = parse_webhook("ContentManagement.Asset.delete", _body(ASSET_TOMBSTONE))
    assert (event.entity, event.entity_id, event.content_type, event.environment_id) == (
        "Asset", "heroImage", None, None,
    )
    assert is_content_change(event)


def test_parse_content_type_publish() -> None:
    body = {"sys": {"type": "ContentType", "id": "hero", "version": 4}, "name": "Hero", "fields": []}
    event = parse_webhook(" ContentManagement.ContentType.publish ", _body(body))
    assert (event.entity, event.content_type) == ("ContentType", "hero")
    assert event.topic == "ContentManagement.ContentType.publish"
    assert is_content_change(event)


@pytest.mark.parametrize("topic", ["ContentManagement.Entry.save", "ContentManagement.Entry.auto_save",
                                   "ContentManagement.Entry.create", "ContentManagement.Task.create"])
def test_draft_only_topics_parse_but_change_nothing(topic: str) -> None:
    assert not is_content_change(parse_webhook(topic, _body(ENTRY_PUBLISH)))


def test_accepted_topics() -> None:
    expected = {f"ContentManagement.{e}.{a}" for e in ("Entry", "Asset")
                for a in ("publish", "unpublish", "delete", "archive")}
    expected |= {f"ContentManagement.ContentType.{a}" for a in ("publish", "unpublish", "delete")}
    assert ACCEPTED_TOPICS == expected


@pytest.mark.parametrize("topic", [None, "", "   "])
def test_missing_topic(topic: str | None) -> None:
    with pytest.raises(WebhookPayloadError, match="missing X-Contentful-Topic"):
        parse_webhook(topic, _body(ENTRY_PUBLISH))


@pytest.mark.parametrize(
    "topic", ["Entry.publish", "ContentManagement.Entry", "ContentManagement.Entry.publish.extra",
              "Other.Entry.publish", "ContentManagement..publish", "ContentManagement.Entry."],
)
def test_malformed_topic(topic: str) -> None:
    with pytest.raises(WebhookPayloadError, match="malformed X-Contentful-Topic"):
        parse_webhook(topic, _body(ENTRY_PUBLISH))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not a JSON object"),
        (b"not json", "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b"{}", "no sys.id"),
        (b'{"sys": {"type": "Entry"}}', "no sys.id"),
        (b'{"sys": {"id": 42}}', "no sys.id"),
        (b'{"sys": "abc"}', "no sys.id"),
    ],
)
def test_bad_bodies(body: bytes, message: str) -> None:
    with pytest.raises(WebhookPayloadError, match=message):
        parse_webhook("ContentManagement.Entry.publish", body)


def test_errors_are_value_errors_and_the_event_is_frozen() -> None:
    assert issubclass(WebhookSignatureError, ValueError) and issubclass(WebhookPayloadError, ValueError)
    event = parse_webhook("ContentManagement.Entry.publish", BODY)
    with pytest.raises(AttributeError):
        event.topic = "x"  # type: ignore[misc]


def test_exported_surface() -> None:
    assert set(webhooks.__all__) == {
        "ACCEPTED_TOPICS", "SIGNATURE_HEADER", "SIGNED_HEADERS_HEADER", "TIMESTAMP_HEADER", "TOPIC_HEADER",
        "WebhookEvent", "WebhookPayloadError", "WebhookSignatureError", "canonical_request",
        "is_content_change", "parse_webhook", "sign_request", "verify_request",
    }
    assert all(hasattr(webhooks, name) for name in webhooks.__all__)


# --- issue #17, item 10: the topic Vary acts on must be signed ----------------------------------------


def test_a_caller_can_require_the_topic_to_be_signed() -> None:
    _verify(_signed_request())  # the test vector signs the topic
    verify_request(SECRET, "POST", PATH, _signed_request(), BODY, now_ms=TIMESTAMP, require_signed=["X-Contentful-Topic"])
    added = sign_request(SECRET, "POST", PATH, HEADERS, BODY, TIMESTAMP, signed_headers=["content-type"])
    unsigned_topic = {**HEADERS, **added}
    _verify(unsigned_topic)  # valid as Contentful's helper sees it ...
    swapped = {**unsigned_topic, "x-contentful-topic": "ContentManagement.Entry.delete"}
    _verify(swapped)  # ... even with another topic: that is the fault
    for headers in (unsigned_topic, swapped):
        with pytest.raises(WebhookSignatureError, match="^signed headers must include x-contentful-topic$"):
            verify_request(
                SECRET, "POST", PATH, headers, BODY, now_ms=TIMESTAMP, require_signed=[webhooks.TOPIC_HEADER]
            )

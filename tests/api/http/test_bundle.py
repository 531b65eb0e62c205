"""``GET /v1/bundle`` (+ ``/key``, ``/events``): signed, versioned, cached, compressed — and decides like
``POST /v1/personalize``, checked against the live server's own answers."""

from __future__ import annotations

import asyncio
import base64
import gzip
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import brotli
import httpx
import msgspec
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from litestar.testing import TestClient
from redis.asyncio import Redis

from api.app import create_app
from api.settings import Settings
from personalization.decision.bundle import BundleDecider, decode_bundle
from personalization.store.pauses import pause_variant
from personalization.types import Consent, Visitor
from tests.api.conftest import ADMIN, DELIVERY
from tests.e2e.servers import free_port

ENTRIES = ["heroHome", "bannerShipping", "bannerNewsletter"]


def _verify(public_key_b64: str, body: bytes, header: str) -> None:
    scheme, _, signature = header.partition("=")
    assert scheme == "ed25519"
    Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64)).verify(base64.b64decode(signature), body)


def test_the_bundle_is_signed_versioned_cached_and_compressed(client: TestClient, delivery: dict[str, str]) -> None:
    key = client.get("/v1/bundle/key", headers=delivery).json()
    assert key["algorithm"] == "ed25519" and key["encrypted"] is False
    assert len(base64.b64decode(key["public_key"])) == 32

    plain = client.get("/v1/bundle", params={"locale": "en-US"}, headers={**delivery, "Accept-Encoding": "identity"})
    assert plain.status_code == 200, plain.text
    assert "content-encoding" not in plain.headers
    _verify(key["public_key"], plain.content, plain.headers["x-vary-signature"])
    bundle = decode_bundle(plain.content)
    assert plain.headers["x-vary-bundle-version"] == bundle.version
    assert bundle.version in plain.headers["etag"] and bundle.fields is None
    assert set(bundle.entries) >= set(ENTRIES) and bundle.segment_model is not None
    assert bundle.model_version == bundle.segment_model.version

    # brotli and gzip: the same signed bytes once decompressed
    for encoding, decompress in (("br", brotli.decompress), ("gzip", gzip.decompress)):
        with client.stream("GET", "/v1/bundle", params={"locale": "en-US"},
                           headers={**delivery, "Accept-Encoding": encoding}) as packed:
            assert packed.headers["content-encoding"] == encoding
            raw = b"".join(packed.iter_raw())
        assert len(raw) < len(plain.content) / 2
        assert decompress(raw) == plain.content
        assert packed.headers["x-vary-signature"] == plain.headers["x-vary-signature"]

    # If-None-Match → 304 with no body; another locale or fields=true is another ETag
    again = client.get("/v1/bundle", params={"locale": "en-US"},
                       headers={**delivery, "If-None-Match": plain.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    with_fields = client.get("/v1/bundle", params={"locale": "en-US", "fields": "true"}, headers=delivery)
    assert with_fields.headers["etag"] != plain.headers["etag"]
    assert with_fields.headers["x-vary-bundle-version"] == bundle.version
    _verify(key["public_key"], with_fields.content, with_fields.headers["x-vary-signature"])

    # built once for the state, whatever the number of requests
    service = client.app.state.bundles
    assert service.builds == 1
    assert client.get("/v1/bundle", headers=delivery).status_code == 200
    assert service.builds == 1

    # the delivery key is required
    assert client.get("/v1/bundle").status_code == 401
    assert client.get("/v1/bundle/key").status_code == 401


def test_fields_are_what_personalize_serves(client: TestClient, delivery: dict[str, str]) -> None:
    served = client.get("/v1/bundle", params={"locale": "de-DE", "fields": "true"}, headers=delivery)
    bundle = msgspec.json.decode(served.content)
    assert bundle["locale"] == "de-DE"
    answer = client.post(
        "/v1/personalize",
        json={"visitor": {"id": "fields-1", "consent": {"personalization": False}}, "entries": ENTRIES,
              "locale": "de-DE"},
        headers=delivery,
    ).json()
    for entry in answer["entries"]:
        assert bundle["fields"][entry["entry_id"]] == entry["fields"]
    variants = {v for e in bundle["experiences"].values() for v in e["variants"]}
    assert variants <= set(bundle["fields"])


def test_local_decisions_equal_the_servers(client: TestClient, delivery: dict[str, str]) -> None:
    """Many visitors decided by the live server and, from the downloaded bundle, by ``BundleDecider``."""
    bundle = decode_bundle(client.get("/v1/bundle", headers=delivery).content)
    decider = BundleDecider(bundle)
    countries = [None, "DE", "US", "CA", "FR"]
    for i in range(120):
        visitor = Visitor(
            id=f"local-eq-{i}",
            channel="web" if i % 4 else "email",
            country=countries[i % 5],
            device="mobile" if i % 3 else "desktop",
            utm={"campaign": "sale"} if i % 7 == 0 else {},
            consent=Consent(personalization=i % 11 != 0),
        )
        answer = client.post(
            "/v1/personalize", json={"visitor": msgspec.to_builtins(visitor), "entries": ENTRIES}, headers=delivery
        )
        assert answer.status_code == 200
        server = answer.json()
        local = decider.decide(visitor, ENTRIES, time.time())
        assert server["segments"].keys() == local.segments.keys()
        for name, score in server["segments"].items():
            assert abs(score - local.segments[name]) <= 1e-9
        assert server["model_version"] == local.model_version
        for served, made in zip(server["entries"], local.decisions, strict=True):
            assert (served["experience"], served["variant"], served["variant_entry_id"], served["holdout"],
                    served["propensity"], served["reason"]) == (
                made.experience, made.variant, made.variant_entry_id, made.holdout, made.propensity, made.reason)


@contextmanager
def _live_server(settings: Settings) -> Iterator[str]:
    """The app under a real uvicorn in a thread: an event stream never ends, so the in-process test
    client (which reads a whole response) cannot follow one."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _pause(redis_url: str, experience: str, variant: int) -> None:
    async def pause() -> None:
        async with Redis.from_url(redis_url) as redis:
            assert await pause_variant(redis, experience, variant, "csat fell (test)", "csat", 1, time.time())

    asyncio.run(pause())


def test_a_guardrail_pause_is_a_new_version_announced_on_the_event_stream(
    redis_url: str, model_dir: Path, delivery: dict[str, str]
) -> None:
    settings = Settings(
        redis_url=redis_url, data_dir=model_dir, delivery_keys=(DELIVERY,), admin_keys=(ADMIN,),
        train_demo_model=False, state_refresh_s=0.1,
    )
    with _live_server(settings) as base, httpx.Client(base_url=base, headers=delivery, timeout=20) as http:
        first = http.get("/v1/bundle")
        version = first.headers["x-vary-bundle-version"]
        with http.stream("GET", "/v1/bundle/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            event = _next_event(lines)
            assert event["event"] == "bundle" and event["id"] == version
            assert msgspec.json.decode(event["data"])["version"] == version
            _pause(redis_url, "banner-shipping-test", 2)
            changed = _next_event(lines)
        assert changed["event"] == "bundle" and changed["id"] != version
        second = http.get("/v1/bundle", headers={"If-None-Match": first.headers["etag"]})
        assert second.status_code == 200 and second.headers["x-vary-bundle-version"] == changed["id"]
        paused = decode_bundle(second.content).experiences["banner-shipping-test"].paused
        assert paused == {2: "csat fell (test)"}


def _next_event(lines: Iterator[str]) -> dict[str, str]:
    """The next complete SSE event (comments skipped), as field → value."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in event:
                return event
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        event[name] = value.removeprefix(" ")
    raise AssertionError(f"the stream ended before an event (got {event})")


def test_an_encrypted_bundle_decrypts_with_the_key_and_is_signed_as_served(
    redis_url: str, model_dir: Path, delivery: dict[str, str]
) -> None:
    aes = bytes(range(32))
    settings = Settings(
        redis_url=redis_url, data_dir=model_dir, delivery_keys=(DELIVERY,), admin_keys=(ADMIN,),
        train_demo_model=False, bundle_encryption_key=base64.b64encode(aes).decode(),
        bundle_signing_key=base64.b64encode(b"\x07" * 32).decode(),
    )
    with TestClient(create_app(settings)) as client:
        key = client.get("/v1/bundle/key", headers=delivery).json()
        assert key["encrypted"] is True
        served = client.get("/v1/bundle", headers=delivery)
        _verify(key["public_key"], served.content, served.headers["x-vary-signature"])
        envelope = msgspec.json.decode(served.content)
        assert set(envelope) == {"format", "version", "encrypted"}
        assert b"banner-shipping-test" not in served.content
        nonce, sealed = (base64.b64decode(part) for part in envelope["encrypted"].split("."))
        bundle = decode_bundle(AESGCM(aes).decrypt(nonce, sealed, None))
        assert bundle.version == envelope["version"] == served.headers["x-vary-bundle-version"]
        assert "banner-shipping-test" in bundle.experiences


def test_a_page_on_another_origin_can_fetch_and_verify_the_bundle(
    redis_url: str, model_dir: Path, delivery: dict[str, str]
) -> None:
    settings = Settings(
        redis_url=redis_url, data_dir=model_dir, delivery_keys=(DELIVERY,), admin_keys=(ADMIN,),
        train_demo_model=False, cors_origins=("https://shop.example",),
    )
    origin = {"Origin": "https://shop.example"}
    with TestClient(create_app(settings)) as client:
        preflight = client.options("/v1/bundle", headers={
            **origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, if-none-match"})
        assert preflight.status_code == 204
        assert "if-none-match" in preflight.headers["access-control-allow-headers"]
        served = client.get("/v1/bundle", headers={**delivery, **origin})
        assert served.headers["access-control-allow-origin"] == "https://shop.example"
        exposed = {h.strip() for h in served.headers["access-control-expose-headers"].split(",")}
        assert {"etag", "x-vary-signature", "x-vary-bundle-version"} <= exposed
        assert client.get("/v1/bundle/key", headers={**delivery, **origin}).headers[
            "access-control-allow-origin"] == "https://shop.example"

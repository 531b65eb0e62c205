"""Exposure tokens: the signed exposure comes back intact; anything altered, foreign or old is refused."""

from __future__ import annotations

import base64
import hashlib

import msgspec
import pytest

from personalization.store.exposure_tokens import (
    DEFAULT_TTL_S,
    MAX_TOKEN_CHARS,
    ExposureTokenError,
    ExposureTokens,
    secret_from_key_digests,
)
from personalization.types import Exposure

NOW = 1_750_000_000.0
SECRET = b"s" * 32


def _exposure(**changes: object) -> Exposure:
    exposure = Exposure(
        id="abc123",
        ts=NOW,
        visitor_id="visitor-1",
        session_id="s1",
        channel="web",
        entry_id="heroHome",
        variant_entry_id="heroHomeCanada",
        experience="hero-north-america",
        variant=1,
        is_control=False,
        holdout=False,
        propensity=1.0,
        model_version="seg-1",
        segments={"price_sensitive": 0.25, "loyal": 0.5},
        country="CA",
        device="mobile",
    )
    return msgspec.structs.replace(exposure, **changes)


def _reason(tokens: ExposureTokens, token: str, now: float = NOW) -> str:
    with pytest.raises(ExposureTokenError) as caught:
        tokens.verify(token, now)
    return caught.value.reason


def test_a_signed_exposure_verifies_to_the_same_record() -> None:
    tokens = ExposureTokens(SECRET)
    for exposure in (_exposure(), _exposure(visitor_id=None, session_id=None, experience=None, segments={})):
        token = tokens.sign(exposure, NOW)
        assert tokens.verify(token, NOW + 10) == exposure


def test_tokens_are_url_safe_and_compact() -> None:
    token = ExposureTokens(SECRET).sign(_exposure(), NOW)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert token.count(".") == 1 and "=" not in token
    assert len(token) < 600  # a full exposure with segment scores, signed


def test_a_tampered_payload_or_signature_is_a_bad_signature() -> None:
    tokens = ExposureTokens(SECRET)
    token = tokens.sign(_exposure(), NOW)
    payload, signature = token.split(".")
    # Re-encode the payload with another variant: a well-formed forgery without the secret.
    raw = msgspec.msgpack.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[2]["variant"] = 0
    forged = base64.urlsafe_b64encode(msgspec.msgpack.encode(raw)).rstrip(b"=").decode()
    assert _reason(tokens, f"{forged}.{signature}") == "bad signature"
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert _reason(tokens, f"{payload}.{flipped}") == "bad signature"


def test_a_token_of_another_secret_is_refused() -> None:
    token = ExposureTokens(b"another secret of enough length").sign(_exposure(), NOW)
    assert _reason(ExposureTokens(SECRET), token) == "bad signature"


def test_a_token_expires_after_its_lifetime() -> None:
    tokens = ExposureTokens(SECRET, ttl_s=60)
    token = tokens.sign(_exposure(), NOW)
    assert tokens.verify(token, NOW + 60).id == "abc123"
    assert _reason(tokens, token, NOW + 61) == "expired"
    assert ExposureTokens(SECRET).ttl_s == DEFAULT_TTL_S


@pytest.mark.parametrize(
    "token",
    ["", "no-dot", ".", "abc.", ".abc", "a.b.c", "ab=c.def", "abc.d+f", "é.abc", "a" * (MAX_TOKEN_CHARS + 1)],
)
def test_garbage_is_malformed(token: str) -> None:
    assert _reason(ExposureTokens(SECRET), token) == "malformed"


def test_a_signed_payload_that_is_not_a_token_is_malformed() -> None:
    """Even a correct signature over bytes that are not claims is refused (never a crash)."""
    tokens = ExposureTokens(SECRET)
    payload = base64.urlsafe_b64encode(b"not msgpack claims").rstrip(b"=").decode()
    signature = tokens._mac(payload.encode())
    token = payload + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    assert _reason(tokens, token) == "malformed"


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        ExposureTokens(b"short")


def test_the_derived_secret_depends_on_every_key_but_not_their_order() -> None:
    d1, d2, a1, a2 = (hashlib.sha256(k.encode()).digest() for k in ("d1", "d2", "a1", "a2"))
    secret = secret_from_key_digests([d1, d2], [a1])
    assert secret == secret_from_key_digests([d2, d1], [a1])
    assert len(secret) == 32
    assert secret != secret_from_key_digests([d1], [a1])
    assert secret != secret_from_key_digests([d1, d2], [a2])
    assert secret != secret_from_key_digests([d1, d2], [a1, a2])

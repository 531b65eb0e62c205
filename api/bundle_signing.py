"""Signing (Ed25519) and optional encryption (AES-GCM) of the decision bundle's bytes.

Why a signature: the bundle is meant to be cached by things Vary does not control — a CDN, an edge
KV store, a service worker. An SDK that holds Vary's public key (``GET /v1/bundle/key``, or pinned in
its configuration) checks ``X-Vary-Signature`` over the exact body bytes before it decides with them,
so a cache can serve a bundle but cannot change one. Ed25519: small keys and signatures, fast to
verify in every runtime (WebCrypto in browsers, Node ≥ 18, workers; ``cryptography`` in Python).

The key: ``VARY_BUNDLE_SIGNING_KEY`` (base64 of the 32-byte private seed), the same on every worker.
Unset, one is generated once and kept in ``<data_dir>/bundle_signing.key`` (mode 0600; created
exclusively, so workers starting together agree on one), like the generated API keys.

Encryption (``VARY_BUNDLE_ENCRYPTION_KEY``, optional, as GrowthBook's encrypted payloads): the body
becomes ``{"format", "version", "encrypted": "<b64 nonce>.<b64 AES-GCM ciphertext+tag>"}``. The key
is shipped to every SDK that decides, so it only keeps rules from casual readers of a cache or a
network log — anyone with the front end's code has it (docs/security.md says what it does not protect).
The signature is over the served bytes (the envelope when encrypted), so a cache can check it too.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "SIGNATURE_HEADER",
    "BundleKeyError",
    "BundleSigner",
    "EncryptedBundle",
    "signer_for",
]

SIGNATURE_HEADER = "X-Vary-Signature"
KEY_FILE = "bundle_signing.key"


class BundleKeyError(ValueError):
    """A configured key that cannot be used (named, so the operator knows which variable to fix)."""


class EncryptedBundle(msgspec.Struct, frozen=True, kw_only=True):
    """The served body when an encryption key is set; ``version`` stays readable (for ETags, exposures)."""

    format: int
    version: str
    encrypted: str


def _b64decode(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except ValueError as exc:
        raise BundleKeyError(f"{name} is not valid base64") from exc


class BundleSigner:
    """Signs bundle bytes; optionally encrypts them first. One per app, shared by its requests."""

    def __init__(self, private_key: Ed25519PrivateKey, encryption_key: bytes | None = None) -> None:
        self._key = private_key
        self.public_key: Ed25519PublicKey = private_key.public_key()
        #: The raw 32-byte public key, base64: what ``GET /v1/bundle/key`` serves and SDKs pin.
        self.public_key_b64 = base64.b64encode(self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
        if encryption_key is not None and len(encryption_key) not in (16, 24, 32):
            raise BundleKeyError("VARY_BUNDLE_ENCRYPTION_KEY must be 16, 24 or 32 bytes (base64)")
        self._aead = AESGCM(encryption_key) if encryption_key is not None else None

    @property
    def encrypts(self) -> bool:
        return self._aead is not None

    def sign(self, body: bytes) -> str:
        """The ``X-Vary-Signature`` value for ``body``: ``ed25519=<base64 signature>``."""
        return "ed25519=" + base64.b64encode(self._key.sign(body)).decode()

    def verify(self, body: bytes, header: str) -> bool:
        """Whether ``header`` is this key's signature of ``body`` (used by tests and the SDK's twin)."""
        scheme, _, value = header.partition("=")
        if scheme != "ed25519":
            return False
        try:
            self.public_key.verify(base64.b64decode(value), body)
        except (InvalidSignature, ValueError):
            return False
        return True

    def seal(self, plain: bytes, version: str, format: int) -> bytes:
        """``plain`` as served: the envelope of :class:`EncryptedBundle` with an encryption key, else itself."""
        if self._aead is None:
            return plain
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain, None)
        envelope = EncryptedBundle(
            format=format,
            version=version,
            encrypted=base64.b64encode(nonce).decode() + "." + base64.b64encode(sealed).decode(),
        )
        return msgspec.json.encode(envelope)


def _stored_key(data_dir: Path) -> bytes:
    """The seed kept in ``<data_dir>/bundle_signing.key``, created on first use.

    Written to a temporary file and hard-linked into place, so the file appears whole or not at all:
    workers starting together all read the one that won the link."""
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(os.urandom(32)).decode())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another worker's key won
        finally:
            temporary.unlink()
    return _b64decode(path.read_text(), str(path))


def signer_for(signing_key: str | None, encryption_key: str | None, data_dir: Path) -> BundleSigner:
    """The app's signer from its settings (see the module docstring for where the key comes from)."""
    seed = _b64decode(signing_key, "VARY_BUNDLE_SIGNING_KEY") if signing_key else _stored_key(data_dir)
    if len(seed) != 32:
        raise BundleKeyError("VARY_BUNDLE_SIGNING_KEY must be the base64 of a 32-byte Ed25519 seed")
    aes = _b64decode(encryption_key, "VARY_BUNDLE_ENCRYPTION_KEY") if encryption_key else None
    return BundleSigner(Ed25519PrivateKey.from_private_bytes(seed), aes)

"""``VaryClient``: verify a bundle once, then decide locally as often as you like.

Why this is thin: everything that decides is :class:`personalization.decision.bundle.BundleDecider`,
i.e. Vary's own ``decide()`` over the bundle's compiled models. This module only (1) checks the
bundle's Ed25519 signature and, when the server encrypts bundles, decrypts it, and (2) shapes the
answer like ``POST /v1/personalize`` and the exposures like ``POST /v1/exposures`` takes them.

Signature checking needs ``cryptography`` (``pip install vary-sdk[verify]``). It is optional
because a bundle fetched from Vary itself over TLS needs no second proof; a bundle from a CDN, a
file or a cache does, so :class:`VaryClient` refuses to skip the check once a public key is given
and ``cryptography`` is missing (it never silently decides from an unverified bundle).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
from msgspec import Struct

from personalization.decision.bundle import (
    BUNDLE_FORMAT,
    Bundle,
    BundleDecider,
    LocalDecision,
    decode_bundle,
    local_exposure_id,
)
from personalization.types import Profile, Visitor

__all__ = [
    "BundleError",
    "GlobalHoldout",
    "LocalAnswer",
    "LocalEntry",
    "SignatureError",
    "VaryClient",
    "exposures_payload",
]


class BundleError(ValueError):
    """The bundle cannot be used: not a bundle, a newer format, encrypted without the key."""


class SignatureError(BundleError):
    """The bundle's signature is missing or does not match the public key: do not decide with it."""


class LocalEntry(Struct, frozen=True, kw_only=True):
    """One entry as ``POST /v1/personalize`` answers it, decided locally, plus the exposure to send."""

    entry_id: str
    experience: str | None
    variant: int
    variant_entry_id: str
    is_control: bool
    holdout: bool
    propensity: float
    reason: str
    exposure_id: str
    #: The variant's fields in the bundle's locale (bundles fetched with ``fields=true``), else ``None``.
    fields: msgspec.Raw | None = None
    #: ``True`` for an entry the bundle cannot decide (a plugin's experience type): ask Vary for it.
    server_only: bool = False
    #: What to send to ``POST /v1/exposures`` (``{"decisions": [...]}``) when the entry is seen.
    decision: LocalDecision | None = None


class GlobalHoldout(Struct, frozen=True, kw_only=True):
    """The visitor's arm of the global holdout (experience ``_global``): what the server would log."""

    variant: int
    holdout: bool
    propensity: float


class LocalAnswer(Struct, frozen=True, kw_only=True):
    """The answer's shape of ``POST /v1/personalize`` (no ``includes``: links are resolved in fields)."""

    visitor_id: str
    locale: str | None
    segments: dict[str, float]
    model_version: str | None
    content_version: str
    bundle_version: str
    entries: list[LocalEntry]
    #: New sticky assignments ``(visitor id, experience key or key@pN, variant)``: keep them in the
    #: visitor's profile (``Profile.assignments``) so the next decision keeps the variant.
    assignments: list[tuple[str, str, int]]
    #: ``None`` without a global holdout (or without personalization consent).
    global_holdout: GlobalHoldout | None = None


def _bytes(value: str | bytes) -> bytes:
    return base64.b64decode(value) if isinstance(value, str) else value


def _verify(body: bytes, signature: str | None, public_key: str | bytes) -> None:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as exc:  # pragma: no cover - exercised where cryptography is absent
        raise SignatureError(
            "a public key was given but `cryptography` is not installed: pip install 'vary-sdk[verify]'"
        ) from exc
    if not signature:
        raise SignatureError("the bundle has no signature (the X-Vary-Signature header)")
    scheme, _, value = signature.partition("=")
    if scheme != "ed25519":
        raise SignatureError(f"unknown signature scheme {scheme!r}: expected 'ed25519=<base64>'")
    try:
        Ed25519PublicKey.from_public_bytes(_bytes(public_key)).verify(base64.b64decode(value), body)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("the bundle's signature does not match the public key") from exc


def _decrypt(envelope: dict[str, Any], key: str | bytes | None) -> bytes:
    if key is None:
        raise BundleError("the bundle is encrypted: pass encryption_key (VARY_BUNDLE_ENCRYPTION_KEY)")
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:  # pragma: no cover
        raise BundleError("decrypting a bundle needs `cryptography`: pip install 'vary-sdk[verify]'") from exc
    try:
        nonce, sealed = (base64.b64decode(part) for part in str(envelope["encrypted"]).split("."))
        return AESGCM(_bytes(key)).decrypt(nonce, sealed, None)
    except Exception as exc:
        raise BundleError("the bundle could not be decrypted with this key") from exc


def _read(body: bytes, encryption_key: str | bytes | None) -> Bundle:
    try:
        head = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BundleError(f"not a Vary bundle: {exc}") from exc
    if not isinstance(head, dict):
        raise BundleError("not a Vary bundle: expected a JSON object")
    if head.get("format", BUNDLE_FORMAT) != BUNDLE_FORMAT:
        raise BundleError(f"bundle format {head.get('format')!r}; this SDK reads format {BUNDLE_FORMAT}")
    plain = _decrypt(head, encryption_key) if "encrypted" in head else body
    try:
        return decode_bundle(plain)
    except msgspec.ValidationError as exc:
        raise BundleError(f"not a Vary bundle: {exc}") from exc


class VaryClient:
    """Decides from one bundle. Build one per bundle version and share it (it is immutable).

    ``bundle``: the body of ``GET /v1/bundle`` (decompressed). ``public_key``: the base64 key of
    ``GET /v1/bundle/key`` (or its 32 raw bytes); given, ``signature`` (the ``X-Vary-Signature``
    header) must match or :class:`SignatureError` is raised. ``encryption_key``: only for servers
    with ``VARY_BUNDLE_ENCRYPTION_KEY``.
    """

    def __init__(
        self,
        bundle: bytes,
        public_key: str | bytes | None = None,
        signature: str | None = None,
        *,
        encryption_key: str | bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if public_key is not None:
            _verify(bundle, signature, public_key)
        self.bundle = _read(bundle, encryption_key)
        self._decider = BundleDecider(self.bundle)
        self._server_only = frozenset(self.bundle.server_only)
        self._clock = clock

    @property
    def version(self) -> str:
        return self.bundle.version

    def decide(
        self,
        visitor: Visitor | Mapping[str, Any],
        entry_ids: Sequence[str],
        profile: Profile | Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> LocalAnswer:
        """Vary's decision for each entry; ``visitor`` and ``profile`` as ``POST /v1/personalize``
        and Vary's profile store know them (dicts are validated into the same Structs)."""
        who = visitor if isinstance(visitor, Visitor) else msgspec.convert(dict(visitor), Visitor)
        known: Profile | None
        if profile is None or isinstance(profile, Profile):
            known = profile
        else:
            known = msgspec.convert(dict(profile), Profile)
        at = self._clock() if now is None else now
        local_ids = [entry_id for entry_id in entry_ids if entry_id not in self._server_only]
        outcome = self._decider.decide(who, local_ids, at, known, new_id=_pending_id)
        decided = iter(outcome.decisions)
        fields = self.bundle.fields or {}
        entries: list[LocalEntry] = []
        for entry_id in entry_ids:
            if entry_id in self._server_only:
                entries.append(_server_only(entry_id))
                continue
            made = next(decided)
            decision = LocalDecision(
                bundle_version=self.bundle.version, ts=at, visitor=who, profile=known, entry_id=entry_id,
                experience=made.experience, variant=made.variant, propensity=made.propensity,
            )
            entries.append(
                LocalEntry(
                    entry_id=made.entry_id, experience=made.experience, variant=made.variant,
                    variant_entry_id=made.variant_entry_id, is_control=made.is_control, holdout=made.holdout,
                    propensity=made.propensity, reason=made.reason, exposure_id=local_exposure_id(decision),
                    fields=fields.get(made.variant_entry_id), decision=decision,
                )
            )
        return LocalAnswer(
            visitor_id=outcome.visitor.id,
            locale=self.bundle.locale,
            segments=outcome.segments,
            model_version=outcome.model_version,
            content_version=self.bundle.content_version,
            bundle_version=self.bundle.version,
            entries=entries,
            assignments=list(outcome.assignments),
            global_holdout=next(
                (GlobalHoldout(variant=e.variant, holdout=e.holdout, propensity=e.propensity)
                 for e in outcome.exposures if e.experience == "_global"),
                None,
            ),
        )


def _pending_id() -> str:
    return ""


def _server_only(entry_id: str) -> LocalEntry:
    return LocalEntry(
        entry_id=entry_id, experience=None, variant=0, variant_entry_id=entry_id, is_control=True, holdout=False,
        propensity=1.0, reason="decided on the server only (a plugin's experience type): ask POST /v1/personalize",
        exposure_id="", server_only=True,
    )


def exposures_payload(entries: Sequence[LocalEntry]) -> bytes:
    """The JSON body of ``POST /v1/exposures`` for the entries the visitor saw."""
    decisions = [entry.decision for entry in entries if entry.decision is not None]
    return msgspec.json.encode({"decisions": decisions})

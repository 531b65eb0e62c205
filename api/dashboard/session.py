"""Dashboard sessions: a signed, expiring token in an HttpOnly cookie — never the admin key itself.

A marketer signs in once with an admin key; the browser then holds only a token
``v1.<expires>.<nonce>.<signature>`` where the signature is HMAC-SHA256 over ``v1.<expires>.<nonce>``
with the deployment's session secret (``VARY_SESSION_SECRET``, or one derived from the admin key
digests: see :meth:`api.http.auth.KeyRing.session_secret`). Rotating the admin keys (without a
configured secret) ends every session at once.

A signature alone cannot be taken back, so a signed token is not enough: the nonce is the session's
id, and a session is live only while Redis holds ``dashboard_session_key(<nonce>)`` (written at
sign-in with the session's TTL, deleted at sign-out) *and* its value is the current sign-out-everywhere
generation (``DASHBOARD_GENERATION_KEY``, bumped by "sign out everywhere"). Both are read in one
``MGET``; if Redis cannot answer, the check fails closed (the error becomes a 503).

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page can make
the browser send it, which is what makes the POST forms CSRF-safe), ``Path=/dashboard`` (the JSON API
never sees it) and ``Secure`` when the request came over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from redis.asyncio import Redis

from personalization.store.keys import DASHBOARD_GENERATION_KEY, dashboard_session_key

__all__ = [
    "COOKIE_NAME",
    "SESSION_TTL_S",
    "begin_session",
    "end_every_session",
    "end_session",
    "issue_token",
    "session_id",
    "session_is_live",
    "token_is_valid",
]

COOKIE_NAME = "vary_dashboard"
#: How long a sign-in lasts: a working day.
SESSION_TTL_S = 8 * 3600
_VERSION = "v1"


def _signature(secret: bytes, payload: str) -> str:
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def issue_token(secret: bytes, now: float, ttl_s: int = SESSION_TTL_S) -> str:
    """A token valid until ``now + ttl_s`` (whole seconds); the nonce makes every sign-in distinct."""
    payload = f"{_VERSION}.{int(now) + ttl_s}.{secrets.token_urlsafe(12)}"
    return f"{payload}.{_signature(secret, payload)}"


def token_is_valid(secret: bytes, token: str | None, now: float) -> bool:
    """Signed with ``secret`` (constant-time compare) and not expired; anything malformed is invalid."""
    if not token or len(token) > 256:
        return False
    payload, _, signature = token.rpartition(".")
    version, _, rest = payload.partition(".")
    expires, _, nonce = rest.partition(".")
    if version != _VERSION or not nonce or not expires.isdigit():
        return False
    if not hmac.compare_digest(signature.encode(), _signature(secret, payload).encode()):
        return False
    return now < int(expires)


def session_id(token: str) -> str:
    """The session id a token carries (its nonce); call on a token :func:`token_is_valid` accepted."""
    return token.rpartition(".")[0].split(".", 2)[2]


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


async def begin_session(redis: Redis, token: str, ttl_s: int = SESSION_TTL_S) -> None:
    """Record a new sign-in: the session lives, in the current generation, for ``ttl_s``."""
    generation = _text(await redis.get(DASHBOARD_GENERATION_KEY)) or "0"
    await redis.set(dashboard_session_key(session_id(token)), generation, ex=ttl_s)


async def session_is_live(redis: Redis, token: str) -> bool:
    """Whether the (validly signed) token's session was neither signed out nor ended everywhere."""
    stored, generation = await redis.mget([dashboard_session_key(session_id(token)), DASHBOARD_GENERATION_KEY])
    return stored is not None and _text(stored) == (_text(generation) or "0")


async def end_session(redis: Redis, token: str) -> None:
    """Sign-out: this session is over on every worker at once."""
    await redis.delete(dashboard_session_key(session_id(token)))


async def end_every_session(redis: Redis) -> None:
    """Sign out everywhere: every session begun before now is over (sessions expire on their own)."""
    await redis.incr(DASHBOARD_GENERATION_KEY)

"""Dashboard sessions: a signed, expiring token in an HttpOnly cookie — never the admin key itself.

A marketer signs in once with an admin key; the browser then holds only a token
``v1.<expires>.<nonce>.<signature>`` where the signature is HMAC-SHA256 over ``v1.<expires>.<nonce>``
with the deployment's session secret (``VARY_SESSION_SECRET``, or one derived from the admin key
digests: see :meth:`api.http.auth.KeyRing.session_secret`). Any worker of the deployment can check it
without shared state, a stolen cookie stops working when it expires, and rotating the admin keys
(without a configured secret) ends every session at once.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page can make
the browser send it, which is what makes the POST forms CSRF-safe), ``Path=/dashboard`` (the JSON API
never sees it) and ``Secure`` when the request came over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["COOKIE_NAME", "SESSION_TTL_S", "issue_token", "token_is_valid"]

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

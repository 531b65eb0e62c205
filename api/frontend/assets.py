"""The front-end kit's files: ``/v1/sdk.js`` (classic script), ``/v1/sdk.mjs`` (ES module), ``/demo``,
and ``/v1/sdk-local.mjs`` (the local-evaluation SDK, ``sdk/js/src/index.js``, for the kit's local mode).

One source file, two forms: ``sdk.js`` defines ``window.Vary`` (and ``window.vary`` when loaded with
``data-key``); the module form is the same text plus an ``export`` tail — a classic script cannot
contain ``export`` and a module cannot be loaded with a plain ``<script>``, so one URL cannot be both.
Both carry an ``ETag`` (SHA-256 of the body) and a short ``Cache-Control``: browsers revalidate every
five minutes and get a 304 until Vary is upgraded. Each file is gzipped once per process for clients
that accept it (``Vary: Accept-Encoding``; the gzipped form has its own ETag).

``/v1/sdk-local.mjs`` is ``static/sdk-local.mjs``, a symbolic link to ``sdk/js/src/index.js`` (the
one source of the JavaScript SDK): setuptools copies the file behind the link into wheels and sdists,
so an installed Vary serves it too, and nothing can drift (tests/api/http/test_sdk.py compares the
served bytes with the SDK's source). A page using ``createVary({ local: true })`` imports it from the
Vary that served the kit, so it needs no npm and no bundler.

The demo page is the demo space's landing page built by the kit in the browser. It needs a delivery
key in the page: with ``VARY_DEMO_PAGE`` on (the default, since ``make run`` is the demo) the first raw
delivery key is written into it; production should turn it off (then ``/demo`` is a 404).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import secrets
from functools import cache
from importlib.resources import files

from litestar import Request
from litestar.datastructures import State
from litestar.response import Response

from api.http.handlers import get
from personalization.errors import FeatureOff

__all__ = ["demo_key", "demo_page", "sdk_local_module", "sdk_module", "sdk_script"]

JS = "text/javascript"  # Litestar adds "; charset=utf-8" to text types
CACHE_CONTROL = "public, max-age=300"
LOCAL_SDK = "sdk-local.mjs"
_MODULE_TAIL = """
// ES module form of the script above (served as /v1/sdk.mjs).
const defaultBase = new URL(import.meta.url).origin;
export function createVary(options) {
  return globalThis.Vary.createVary(Object.assign({ baseUrl: defaultBase }, options));
}
export const version = globalThis.Vary.version;
export default { createVary, version };
"""


def _static(name: str) -> str:
    return (files("api.frontend") / "static" / name).read_text(encoding="utf-8")


@cache
def _asset(name: str) -> tuple[bytes, str]:
    """The body and its ETag (read once per process; the files ship with the package)."""
    body = _static(LOCAL_SDK if name == LOCAL_SDK else "sdk.js")
    if name == "sdk.mjs":
        body += _MODULE_TAIL
    data = body.encode("utf-8")
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


@cache
def _gzipped(name: str) -> tuple[bytes, str]:
    """The body gzipped once per process, with its own ETag (another representation of the same file).

    The local SDK is ~118 KB of commented source and ~36 KB gzipped; the kit ~45 KB and ~13 KB.
    """
    body, etag = _asset(name)
    return gzip.compress(body, compresslevel=9, mtime=0), etag[:-1] + '-gz"'


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` takes gzip (``gzip`` or ``*`` without ``q=0``)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip()
            try:
                return not q.startswith("q=") or float(q[2:]) > 0
            except ValueError:
                return False
    return False


def _serve(request: Request, name: str) -> Response[bytes]:
    gzipped = _accepts_gzip(request.headers.get("accept-encoding", ""))
    body, etag = _gzipped(name) if gzipped else _asset(name)
    headers = {
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    presented = request.headers.get("if-none-match", "")
    current = {_asset(name)[1], _gzipped(name)[1]}  # either representation is still current
    if current & {tag.strip().removeprefix("W/") for tag in presented.split(",")} or presented.strip() == "*":
        return Response(b"", status_code=304, headers=headers, media_type=JS)
    return Response(body, headers=headers, media_type=JS)


@get("/v1/sdk.js", include_in_schema=False, sync_to_thread=False)
def sdk_script(request: Request) -> Response[bytes]:
    """The front-end kit as a classic script (``<script src=... data-key=...>``)."""
    return _serve(request, "sdk.js")


@get("/v1/sdk.mjs", include_in_schema=False, sync_to_thread=False)
def sdk_module(request: Request) -> Response[bytes]:
    """The front-end kit as an ES module (``import { createVary } from ".../v1/sdk.mjs"``)."""
    return _serve(request, "sdk.mjs")


@get("/v1/sdk-local.mjs", include_in_schema=False, sync_to_thread=False)
def sdk_local_module(request: Request) -> Response[bytes]:
    """The local-evaluation SDK (``sdk/js/src/index.js``), which the kit's local mode imports."""
    return _serve(request, LOCAL_SDK)


def demo_key(delivery_keys: tuple[str, ...] | list[str]) -> str | None:
    """The first raw delivery key (a ``sha256:`` key cannot be given to a browser)."""
    return next((key for key in delivery_keys if not key.startswith("sha256:")), None)


@get("/demo", include_in_schema=False, sync_to_thread=False)
def demo_page(state: State) -> Response[bytes]:
    """The demo store, personalized in the browser by the kit (query string = visitor context)."""
    if not state.settings.demo_page:
        raise FeatureOff("the demo page is off (VARY_DEMO_PAGE=false)")
    nonce = secrets.token_urlsafe(16)
    # JSON inside <script>: "<" escaped so no value can close the element.
    config = json.dumps({"key": state.get("demo_key")}).replace("<", "\\u003c")
    html = _static("demo.html").replace("__VARY_NONCE__", nonce).replace("__VARY_CONFIG__", config)
    csp = (
        f"default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return Response(
        html.encode("utf-8"),
        media_type="text/html",  # Litestar adds "; charset=utf-8"
        headers={"Cache-Control": "no-store", "Content-Security-Policy": csp, "Referrer-Policy": "same-origin"},
    )

"""A local stand-in for Contentful's Content Delivery API, serving a space export file.

Tests drive the real ``contentful`` SDK against it (DESIGN §4), so it speaks the CDA's wire format as
the SDK expects it (``reference/contentful.md``): ``/spaces/{space}/environments/{env}/…`` with
``content_types``, ``locales``, ``entries`` (``sys.id``, ``content_type``, ``locale``, ``limit``,
``skip``, ``include``), ``assets`` and ``sync`` (initial sync paged by ``nextPageUrl``, then
``nextSyncUrl``; later tokens return what changed since, including ``DeletedEntry``/``DeletedAsset``).
Requests need ``Authorization: Bearer <token>``.

It is also the Content Preview API: requests with the *preview* token see the latest draft of every
entry and asset (unpublished ones too) on ``/entries`` and ``/assets``, and get no Sync API. Drafts
are kept apart from what is published: :meth:`FakeContentful.draft` edits only the drafts, while
:meth:`FakeContentful.mutate` edits and publishes.

The served space is built from a management-format export (the same file Vary bundles), converted to
delivery format by :mod:`tests.content.delivery_format` independently of Vary's own parsing, so a test
comparing the two paths is not comparing Vary's code with itself.

Made to grow: :attr:`FakeContentful.faults` is a list of :class:`Fault` hooks checked before every
request (HTTP errors, 429s with or without a reset header, slow responses), and
:meth:`FakeContentful.mutate` changes the served space so delta syncs have something to report.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from sys import exc_info
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.content.delivery_format import (
    delivery_content_type,
    delivery_item,
    delivery_locale,
    error_response,
    link,
    link_target,
    links_in,
    page_of,
    space_id_of,
)

__all__ = ["FakeContentful", "Fault", "RecordedRequest", "DEFAULT_TOKEN", "DEFAULT_PREVIEW_TOKEN"]

DEFAULT_TOKEN = "vary-test-delivery-token"
DEFAULT_PREVIEW_TOKEN = "vary-test-preview-token"
_JSON_TYPE = "application/vnd.contentful.delivery.v1+json"


@dataclass
class Fault:
    """One way the server misbehaves, checked against every request before it is served.

    Matches requests whose path contains ``path`` ("" = all). It waits ``delay_s``, then answers
    ``status`` with ``body`` (default: Contentful's error body for that status) and ``headers`` —
    unless ``status`` is ``None``, which only delays and then serves normally (a slow response).
    ``times`` is how many requests it hits before it is spent (``None`` = all of them).
    """

    path: str = ""
    status: int | None = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    times: int | None = 1
    hits: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received (after faults were applied)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class _Cursor:
    """A sync token's state: pages still to send, or (``pending`` is None) a point to sync from."""

    generation: int
    pending: list[dict[str, Any]] | None = None


class FakeContentful:
    """A CDA server on 127.0.0.1 (random port) in a background thread; use as a context manager.

    ``sync_page_size`` is how many items one sync page carries (small values exercise paging).
    ``access_token`` sees what is published; ``preview_token`` sees the drafts (Preview API).
    """

    def __init__(
        self,
        export: Mapping[str, Any] | str | Path,
        *,
        space_id: str | None = None,
        environment: str = "master",
        access_token: str = DEFAULT_TOKEN,
        preview_token: str = DEFAULT_PREVIEW_TOKEN,
        sync_page_size: int = 100,
    ) -> None:
        if not isinstance(export, Mapping):
            export = json.loads(Path(export).read_text(encoding="utf-8"))
        self.environment = environment
        self.access_token = access_token
        self.preview_token = preview_token
        self.sync_page_size = sync_page_size
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self._lock = threading.RLock()
        self._export: dict[str, Any] = copy.deepcopy(dict(export))  # what is published
        self._drafts: dict[str, Any] = copy.deepcopy(self._export)  # the latest version of everything
        self.space_id = space_id or space_id_of(self._export)
        self._generations: list[dict[tuple[str, str], dict[str, Any]]] = []
        self._tokens: dict[str, _Cursor] = {}
        self._publish_generation()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeContentful:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
            name="fake-contentful", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeContentful:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        """``host:port`` for ``contentful.Client(api_url=…, https=False)``."""
        if self._server is None:
            raise RuntimeError("the server is not running")
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    # -- changing what is served -----------------------------------------------------------------

    @property
    def export(self) -> dict[str, Any]:
        """A copy of the export currently served (the published content)."""
        with self._lock:
            return copy.deepcopy(self._export)

    @property
    def drafts(self) -> dict[str, Any]:
        """A copy of the drafts: the latest version of everything, as the preview token sees it."""
        with self._lock:
            return copy.deepcopy(self._drafts)

    def mutate(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` and publish it: to a copy of the served export, served from now on (a new
        sync generation), and to the drafts, so the preview sees it too."""
        with self._lock:
            export = copy.deepcopy(self._export)
            change(export)
            drafts = copy.deepcopy(self._drafts)
            change(drafts)
            self._export, self._drafts = export, drafts
            self._publish_generation()

    def draft(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to the drafts only, as an editor saving without publishing: the preview
        token sees it, the delivery token and sync do not. Entries and assets the change touched get a
        new ``sys.version`` and ``sys.updatedAt``; whether an item counts as published for delivery
        does not matter here (preview shows every draft)."""
        with self._lock:
            drafts = copy.deepcopy(self._drafts)
            change(drafts)
            before = {
                (key, item["sys"]["id"]): item for key in ("entries", "assets")
                for item in self._drafts.get(key, [])
            }
            for key in ("entries", "assets"):
                for item in drafts.get(key, []):
                    if before.get((key, item["sys"]["id"])) != item:
                        item["sys"]["version"] = item["sys"].get("version", 0) + 1
                        item["sys"]["updatedAt"] = _now()
            self._drafts = drafts

    def requests_to(self, resource: str) -> list[RecordedRequest]:
        """The recorded requests whose path ends with ``/resource`` (e.g. ``"sync"``)."""
        return [r for r in self.requests if r.path.rstrip("/").endswith("/" + resource)]

    # -- request handling (called from the handler thread) ---------------------------------------

    def _fault_for(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.path in path and (fault.times is None or fault.hits < fault.times):
                    fault.hits += 1
                    return fault
        return None

    def _route(
        self, path: str, query: dict[str, str], base_url: str, preview: bool = False
    ) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2 or parts[0] != "spaces" or parts[1] != self.space_id:
            return error_response(404, details={"type": "Space", "id": parts[1] if len(parts) > 1 else ""})
        rest = parts[2:]
        if rest[:1] == ["environments"]:
            if len(rest) < 2 or rest[1] != self.environment:
                return error_response(404, details={"type": "Environment", "id": rest[1] if len(rest) > 1 else ""})
            rest = rest[2:]
        elif self.environment != "master":
            return error_response(404, details={"type": "Environment", "id": "master"})
        with self._lock:
            if rest == ["content_types"]:
                return 200, page_of(self._content_types(), query)
            if len(rest) == 2 and rest[0] == "content_types":
                found = [ct for ct in self._content_types() if ct["sys"]["id"] == rest[1]]
                return (200, found[0]) if found else error_response(404, {"type": "ContentType", "id": rest[1]})
            if rest == ["locales"]:
                return 200, page_of([delivery_locale(loc) for loc in self._locales()], query)
            if rest in (["entries"], ["assets"]):
                return self._entities(rest[0], query, preview=preview)
            if len(rest) == 2 and rest[0] in ("entries", "assets"):
                return self._entities(rest[0], {**query, "sys.id": rest[1]}, single=True, preview=preview)
            if rest == ["sync"]:
                if preview:
                    return error_response(400, details="The Sync API is not available in the Content Preview API.")
                return self._sync(query, base_url)
        return error_response(404)

    def _content_types(self) -> list[dict[str, Any]]:
        return [
            delivery_content_type(ct, self.space_id, self.environment)
            for ct in self._export.get("contentTypes", [])
            if ct.get("sys", {}).get("publishedVersion")
        ]

    def _locales(self) -> list[dict[str, Any]]:
        return list(self._export.get("locales", []))

    def _published(self, kind: str) -> list[dict[str, Any]]:
        key = "entries" if kind == "entries" else "assets"
        return [item for item in self._export.get(key, []) if item.get("sys", {}).get("publishedVersion")]

    def _previewed(self, kind: str) -> list[dict[str, Any]]:
        """Every draft (published or not) except archived ones: what the Preview API serves."""
        key = "entries" if kind == "entries" else "assets"
        return [item for item in self._drafts.get(key, []) if not item.get("sys", {}).get("archivedVersion")]

    def _entities(
        self, kind: str, query: dict[str, str], single: bool = False, preview: bool = False
    ) -> tuple[int, Any]:
        locales = self._locales()
        locale = query.get("locale")
        codes = {loc["code"] for loc in locales}
        if locale not in (None, "*") and locale not in codes:
            return error_response(400, details={"errors": [{"name": "unknownLocale", "value": locale}]})
        items = self._previewed(kind) if preview else self._published(kind)
        if "sys.id" in query:
            items = [i for i in items if i["sys"]["id"] == query["sys.id"]]
        if "sys.id[in]" in query:
            wanted = set(query["sys.id[in]"].split(","))
            items = [i for i in items if i["sys"]["id"] in wanted]
        if kind == "entries" and "content_type" in query:
            items = [i for i in items if link_target(i["sys"].get("contentType")) == query["content_type"]]
        items.sort(key=lambda i: i["sys"]["id"])
        if single:
            if not items:
                return error_response(404, {"type": "Entry" if kind == "entries" else "Asset", "id": query["sys.id"]})
            return 200, self._deliver(items[0], locale, locales, preview)
        try:
            limit = min(int(query.get("limit", 100)), 1000)
            skip = int(query.get("skip", 0))
            include = min(int(query.get("include", 1)), 10)
        except ValueError:
            return error_response(400)
        page = items[skip : skip + limit]
        delivered = [self._deliver(item, locale, locales, preview) for item in page]
        body: dict[str, Any] = {
            "sys": {"type": "Array"}, "total": len(items), "skip": skip, "limit": limit,
            "items": delivered,
        }
        if kind == "entries":
            includes, errors = self._includes(page, include, locale, locales, preview)
            if includes["Entry"] or includes["Asset"]:
                body["includes"] = includes
            if errors:
                body["errors"] = errors
        return 200, body

    def _deliver(
        self, item: dict[str, Any], locale: str | None, locales: list[dict[str, Any]], preview: bool = False
    ) -> dict[str, Any]:
        non_localized: set[str] = set()
        omitted: set[str] = set()
        if item["sys"]["type"] == "Entry":
            type_id = link_target(item["sys"]["contentType"])
            for ct in (self._drafts if preview else self._export).get("contentTypes", []):
                if ct["sys"]["id"] == type_id:
                    non_localized = {f["id"] for f in ct["fields"] if not f.get("localized")}
                    omitted = {f["id"] for f in ct["fields"] if f.get("omitted")}
        return delivery_item(
            item, self.space_id, self.environment, locale=locale, locales=locales,
            non_localized=non_localized, omitted=omitted, draft=preview,
        )

    def _includes(
        self, page: list[dict[str, Any]], levels: int, locale: str | None, locales: list[dict[str, Any]],
        preview: bool = False,
    ) -> tuple[dict[str, list[Any]], list[Any]]:
        visible = self._previewed if preview else self._published
        by_key = {("Entry", e["sys"]["id"]): e for e in visible("entries")}
        by_key.update({("Asset", a["sys"]["id"]): a for a in visible("assets")})
        seen = {("Entry", item["sys"]["id"]) for item in page}
        includes: dict[str, list[Any]] = {"Entry": [], "Asset": []}
        errors: list[Any] = []
        frontier = page
        for _ in range(levels):
            next_frontier = []
            for item in frontier:
                for link_type, target in links_in(item.get("fields", {})):
                    key = (link_type, target)
                    if key in seen:
                        continue
                    seen.add(key)
                    found = by_key.get(key)
                    if found is None:
                        errors.append({
                            "sys": {"id": "notResolvable", "type": "error"},
                            "details": {"type": "Link", "linkType": link_type, "id": target},
                        })
                        continue
                    includes[link_type].append(self._deliver(found, locale, locales, preview))
                    next_frontier.append(found)
            frontier = next_frontier
        return includes, errors

    def _sync(self, query: dict[str, str], base_url: str) -> tuple[int, Any]:
        generation = len(self._generations) - 1
        if query.get("initial") == "true":
            items = list(self._generations[generation].values())
        elif "sync_token" in query:
            cursor = self._tokens.get(query["sync_token"])
            if cursor is None:
                return error_response(400, details="The sync token is invalid or expired.")
            if cursor.pending is not None:
                items, generation = cursor.pending, cursor.generation
            else:
                items = self._changes_since(cursor.generation, generation)
        else:
            return error_response(400, details="Either initial=true or sync_token is required.")
        page, rest = items[: self.sync_page_size], items[self.sync_page_size :]
        token = secrets.token_hex(16)
        url = f"{base_url}/spaces/{self.space_id}/environments/{self.environment}/sync?sync_token={token}"
        body: dict[str, Any] = {"sys": {"type": "Array"}, "items": page}
        if rest:
            self._tokens[token] = _Cursor(generation, pending=rest)
            body["nextPageUrl"] = url
        else:
            self._tokens[token] = _Cursor(generation)
            body["nextSyncUrl"] = url
        return 200, body

    def _changes_since(self, old: int, new: int) -> list[dict[str, Any]]:
        before, after = self._generations[old], self._generations[new]
        changed = [item for key, item in after.items() if before.get(key) != item]
        deleted = [
            {"sys": {
                "type": f"Deleted{kind}", "id": entity_id, "space": link("Space", self.space_id),
                "environment": link("Environment", self.environment), "revision": 1,
                "createdAt": _now(), "updatedAt": _now(), "deletedAt": _now(),
            }}
            for (kind, entity_id) in before.keys() - after.keys()
        ]
        return changed + sorted(deleted, key=lambda d: d["sys"]["id"])

    def _publish_generation(self) -> None:
        locales = self._locales()
        snapshot: dict[tuple[str, str], dict[str, Any]] = {}
        for kind, entity in (("Entry", "entries"), ("Asset", "assets")):
            for item in sorted(self._published(entity), key=lambda i: i["sys"]["id"]):
                snapshot[(kind, item["sys"]["id"])] = self._deliver(item, "*", locales)
        self._generations.append(snapshot)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout against a slow Fault) closed the socket: not an error.
        if isinstance(exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeContentful
    server_version = "FakeContentful/1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        fault = self.fake._fault_for(url.path)
        if fault is not None:
            time.sleep(fault.delay_s)
            if fault.status is not None:
                _, default_body = error_response(fault.status)
                self._send(fault.status, default_body if fault.body is None else fault.body, fault.headers)
                return
        with self.fake._lock:
            self.fake.requests.append(RecordedRequest(url.path, query, dict(self.headers.items())))
        view = self._view(query)
        if view is None:
            self._send(*error_response(401))
            return
        host = self.headers.get("Host") or self.fake.api_url
        status, body = self.fake._route(url.path, query, f"http://{host}", preview=view == "preview")
        self._send(status, body)

    def _view(self, query: dict[str, str]) -> str | None:
        """``"delivery"`` or ``"preview"`` by the token sent, ``None`` for an unknown token."""
        header = self.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else query.get("access_token")
        if token is None:
            return None
        if secrets.compare_digest(token, self.fake.access_token):
            return "delivery"
        if secrets.compare_digest(token, self.fake.preview_token):
            return "preview"
        return None

    def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", _JSON_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Contentful-Request-Id", secrets.token_hex(8))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

"""A local stand-in for the few Content Management API endpoints the installer uses, for the real
``contentful_management`` client.

Serves one space and environment under ``/spaces/{space}/environments/{env}``:

- ``GET  …/content_types`` (``limit``, ``skip``) and ``GET …/content_types/{id}``
- ``PUT  …/content_types/{id}``: creates without ``X-Contentful-Version``; updates only with the
  current version (else 409 ``VersionMismatch``, as Contentful does); the version goes up by one
- ``PUT  …/content_types/{id}/published``: the same version check; records ``publishedVersion`` and
  bumps ``version``, so a published, unchanged content type has ``version == publishedVersion + 1``
- ``DELETE …/content_types/{id}/published``: unpublish

It stores definitions as Contentful returns them (every field with its ``localized``/``required``/
``validations``/``disabled``/``omitted`` defaults filled in), answers Contentful-shaped errors
(401 without the bearer token, 404 for other spaces/environments/ids, 422 for a few definitions
Contentful refuses), and records every request in :attr:`FakeManagement.requests`.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["FakeManagement", "RecordedRequest", "DEFAULT_TOKEN", "published_ids"]

DEFAULT_TOKEN = "vary-test-management-token"
_JSON_TYPE = "application/vnd.contentful.management.v1+json"
_WRITES = frozenset({"PUT", "POST", "PATCH", "DELETE"})
_FIELD_DEFAULTS = {"localized": False, "required": False, "validations": [], "disabled": False, "omitted": False}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it; ``body`` is the parsed JSON body, if any."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any

    @property
    def is_write(self) -> bool:
        return self.method in _WRITES


class _Refusal(Exception):
    def __init__(self, status: int, error_id: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.error_id, self.message, self.details = status, error_id, message, details


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _link(link_type: str, link_id: str) -> dict[str, Any]:
    return {"sys": {"type": "Link", "linkType": link_type, "id": link_id}}


class FakeManagement:
    """Start with ``with FakeManagement() as cma:``; point the client at ``cma.api_url`` over http."""

    def __init__(self, *, space_id: str = "space0001", environment: str = "master",
                 token: str = DEFAULT_TOKEN) -> None:
        self.space_id = space_id
        self.environment = environment
        self.token = token
        self.content_types: dict[str, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        #: Called with each request before it is served: a test's way to make something happen "meanwhile".
        self.on_request: Callable[[RecordedRequest], None] | None = None
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------------

    def __enter__(self) -> FakeManagement:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-cma", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def api_url(self) -> str:
        """``host:port`` for ``contentful_management.Client(api_url=..., https=False)``."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    # --- what tests look at and change -------------------------------------------------------------

    @property
    def writes(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_write]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def seed(self, definition: dict[str, Any], *, published: bool = True) -> dict[str, Any]:
        """Add a content type as if someone had created (and published) it in the web app."""
        content_type_id = definition["sys"]["id"] if "sys" in definition else definition["id"]
        body = {k: v for k, v in definition.items() if k not in ("sys", "id")}
        with self._lock:
            stored = self._store(content_type_id, body, None)
            if published:
                self._publish(content_type_id, stored["sys"]["version"])
            return copy.deepcopy(self.content_types[content_type_id])

    def edit(
        self, content_type_id: str, change: Callable[[dict[str, Any]], None], *, publish: bool = True
    ) -> None:
        """Someone edits a content type in the web app (then publishes it, by default)."""
        with self._lock:
            current = self.content_types[content_type_id]
            body = copy.deepcopy({k: v for k, v in current.items() if k != "sys"})
            change(body)
            stored = self._store(content_type_id, body, current["sys"]["version"])
            if publish:
                self._publish(content_type_id, stored["sys"]["version"])

    # --- the API ------------------------------------------------------------------------------------

    def _prefix(self) -> str:
        return f"/spaces/{self.space_id}/environments/{self.environment}/content_types"

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: Any) -> tuple[int, Any]:
        with self._lock:
            request = RecordedRequest(method, path, query, headers, copy.deepcopy(body))
            self.requests.append(request)
            if self.on_request is not None:
                self.on_request(request)
            if headers.get("authorization") != f"Bearer {self.token}":
                raise _Refusal(401, "AccessTokenInvalid",
                               "The access token you sent could not be found or is invalid.")
            prefix = self._prefix()
            if not (path == prefix or path.startswith(prefix + "/")):
                raise _Refusal(404, "NotFound", "The resource could not be found.",
                               {"type": "Environment", "id": self.environment})
            parts = [p for p in path[len(prefix):].split("/") if p]
            version = headers.get("x-contentful-version")
            if not parts and method == "GET":
                return 200, self._collection(query)
            if len(parts) == 1 and method == "GET":
                return 200, copy.deepcopy(self._get(parts[0]))
            if len(parts) == 1 and method == "PUT":
                status = 200 if parts[0] in self.content_types else 201
                return status, copy.deepcopy(self._put(parts[0], body, version))
            if len(parts) == 2 and parts[1] == "published" and method in ("PUT", "DELETE"):
                self._check_version(parts[0], version)
                if method == "PUT":
                    self._check_definition(parts[0], self.content_types[parts[0]])
                    return 200, copy.deepcopy(self._publish(parts[0], int(version or 0)))
                return 200, copy.deepcopy(self._unpublish(parts[0]))
            raise _Refusal(404, "NotFound", "The resource could not be found.", {"type": "Endpoint"})

    def _collection(self, query: dict[str, str]) -> dict[str, Any]:
        limit, skip = int(query.get("limit", 100)), int(query.get("skip", 0))
        if limit > 1000:
            raise _Refusal(400, "BadRequest", "limit must be at most 1000")
        items = list(self.content_types.values())
        return {"sys": {"type": "Array"}, "total": len(items), "skip": skip, "limit": limit,
                "items": copy.deepcopy(items[skip:skip + limit])}

    def _get(self, content_type_id: str) -> dict[str, Any]:
        if content_type_id not in self.content_types:
            raise _Refusal(404, "NotFound", "The resource could not be found.",
                           {"type": "ContentType", "id": content_type_id})
        return self.content_types[content_type_id]

    def _check_version(self, content_type_id: str, version: str | None) -> None:
        current = self._get(content_type_id)["sys"]["version"]
        if version is None or version != str(current):
            raise _Refusal(409, "VersionMismatch", "Version mismatch")

    def _put(self, content_type_id: str, body: Any, version: str | None) -> dict[str, Any]:
        if content_type_id in self.content_types:
            self._check_version(content_type_id, version)
        elif version is not None:
            raise _Refusal(404, "NotFound", "The resource could not be found.",
                           {"type": "ContentType", "id": content_type_id})
        if not isinstance(body, dict):
            raise _Refusal(400, "BadRequest", "The body must be a JSON object.")
        current = self.content_types.get(content_type_id)
        return self._store(content_type_id, body, current["sys"]["version"] if current else None)

    def _store(self, content_type_id: str, body: dict[str, Any], version: int | None) -> dict[str, Any]:
        fields = []
        for field in body.get("fields") or []:
            filled = {**copy.deepcopy(_FIELD_DEFAULTS), **copy.deepcopy(field)}
            if filled.get("type") == "Array" and isinstance(filled.get("items"), dict):
                filled["items"] = {"validations": [], **filled["items"]}
            fields.append(filled)
        definition = {
            "name": body.get("name"),
            "displayField": body.get("displayField"),
            "description": body.get("description"),
            "fields": fields,
        }
        previous = self.content_types.get(content_type_id)
        self._check_definition(content_type_id, definition, previous)
        now = _now()
        if previous is None:
            sys = {
                "space": _link("Space", self.space_id),
                "environment": _link("Environment", self.environment),
                "id": content_type_id, "type": "ContentType",
                "createdAt": now, "createdBy": _link("User", "installer"), "version": 1,
            }
        else:
            sys = copy.deepcopy(previous["sys"])
            sys["version"] = (version or 0) + 1
        sys.update(updatedAt=now, updatedBy=_link("User", "installer"))
        stored = {"sys": sys, **definition}
        self.content_types[content_type_id] = stored
        return stored

    def _check_definition(self, content_type_id: str, definition: dict[str, Any],
                          previous: dict[str, Any] | None = None) -> None:
        """A few of the checks Contentful makes, the ones an installer bug would trip."""
        errors = []
        if not definition.get("name"):
            errors.append({"name": "required", "path": ["name"]})
        fields = definition.get("fields") or []
        if len(fields) > 50:
            errors.append({"name": "size", "path": ["fields"], "value": len(fields)})
        ids = [f.get("id") for f in fields]
        if len(ids) != len(set(ids)):
            errors.append({"name": "unique", "path": ["fields"], "value": ids})
        for i, field in enumerate(fields):
            for key in ("id", "name", "type"):
                if not field.get(key):
                    errors.append({"name": "required", "path": ["fields", i, key]})
            if field.get("type") == "Link" and field.get("linkType") not in ("Entry", "Asset"):
                errors.append({"name": "in", "path": ["fields", i, "linkType"], "value": field.get("linkType")})
            if field.get("type") == "Array" and not isinstance(field.get("items"), dict):
                errors.append({"name": "required", "path": ["fields", i, "items"]})
        display = definition.get("displayField")
        if display and display not in ids:
            errors.append({"name": "displayField", "path": ["displayField"], "value": display})
        if previous is not None:
            for old in previous["fields"]:
                new = next((f for f in fields if f.get("id") == old["id"]), None)
                if new is None and not old.get("omitted"):
                    errors.append({"name": "deleted", "path": ["fields"], "value": old["id"],
                                   "details": "A field must be omitted before it is deleted"})
                elif new is not None and new.get("type") != old.get("type"):
                    errors.append({"name": "type", "path": ["fields", old["id"], "type"],
                                   "value": new.get("type")})
        if errors:
            raise _Refusal(422, "ValidationFailed", "Validation error", {"errors": errors})

    def _publish(self, content_type_id: str, version: int) -> dict[str, Any]:
        stored = self.content_types[content_type_id]
        sys = stored["sys"]
        now = _now()
        sys["publishedVersion"] = version
        sys["publishedCounter"] = sys.get("publishedCounter", 0) + 1
        sys["version"] = version + 1
        sys.setdefault("firstPublishedAt", now)
        sys.update(publishedAt=now, publishedBy=_link("User", "installer"))
        return stored

    def _unpublish(self, content_type_id: str) -> dict[str, Any]:
        stored = self.content_types[content_type_id]
        for key in ("publishedVersion", "publishedAt", "publishedBy"):
            stored["sys"].pop(key, None)
        stored["sys"]["version"] += 1
        return stored


class _Handler(BaseHTTPRequestHandler):
    fake: FakeManagement
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # keep test output clean

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("latin-1")
        try:
            status, payload = self.fake.handle(self.command, url.path, dict(parse_qsl(url.query)), headers, body)
        except _Refusal as refusal:
            status = refusal.status
            payload = {"sys": {"type": "Error", "id": refusal.error_id}, "message": refusal.message,
                       "requestId": "fake-cma"}
            if refusal.details is not None:
                payload["details"] = refusal.details
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", _JSON_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve


def published_ids(server: FakeManagement) -> Iterator[str]:
    """Ids of content types whose current version is published (version == publishedVersion + 1)."""
    for content_type_id, stored in server.content_types.items():
        sys = stored["sys"]
        if sys.get("publishedVersion") is not None and sys["version"] == sys["publishedVersion"] + 1:
            yield content_type_id

"""Every guarded route runs its guards without copying its handler (api/http/handlers.py), and the guards
still decide: no key 401, wrong scope 403, right key through."""

from __future__ import annotations

from litestar.testing import TestClient

from api.app import create_app
from api.http.handlers import GuardedRoute
from api.settings import Settings

from tests.api.conftest import ADMIN, DELIVERY


def test_every_guarded_route_uses_vary_s_decorators(settings: Settings) -> None:
    app = create_app(settings)
    guarded = [
        (route.path, handler)
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        if handler.resolve_guards() and handler.http_methods != {"OPTIONS"}  # Litestar's own OPTIONS
    ]
    assert len(guarded) > 20  # delivery, admin, models, visitors, plugins, export, dashboard
    plain = [path for path, handler in guarded if not isinstance(handler, GuardedRoute)]
    assert plain == [], f"use api.http.handlers' get/post/put/delete for {plain}"


def test_the_guards_still_decide(client: TestClient) -> None:
    body = {"visitor": {"id": "g-1"}, "entries": ["heroHome"]}
    assert client.post("/v1/personalize", json=body).status_code == 401
    assert client.post("/v1/personalize", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/v1/personalize", json=body, headers={"Authorization": f"Bearer {DELIVERY}"}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {DELIVERY}"}).status_code == 403
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200

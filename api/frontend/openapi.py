"""Finishing touches on the OpenAPI document, so a typed client can be generated from ``/schema``.

Litestar documents each route's success body; what a client generator (``openapi-python-client``)
also needs, and Litestar cannot infer, is filled in here once for every route, after the app is built
(so routes added later in any module get it too):

* **security**: the two key scopes as security schemes — ``deliveryKey`` (bearer; admin keys work
  too), ``deliveryKeyQuery`` (``?key=``, delivery routes only, for beacons) and ``adminKey`` — and
  each guarded operation names the ones it takes, read from its guard;
* **error bodies**: Litestar's generated 400 schema (``extra`` typed as null|object|array with
  ``additionalProperties``) makes generators drop the response; guarded routes instead document 400,
  401, 403 and 429 with Vary's own :class:`~api.http.schemas.ErrorBody`, a named component.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute

from api.http.auth import requires_admin, requires_delivery
from api.http.schemas import ErrorBody

__all__ = ["SECURITY_SCHEMES", "complete_openapi"]

SECURITY_SCHEMES: dict[str, SecurityScheme] = {
    "deliveryKey": SecurityScheme(
        type="http",
        scheme="bearer",
        description="A delivery key (may live in a web page or an app); an admin key also works.",
    ),
    "deliveryKeyQuery": SecurityScheme(
        type="apiKey",
        name="key",
        security_scheme_in="query",
        description="A delivery key as the `key` query parameter, for `navigator.sendBeacon`, which cannot set "
        "headers. Delivery routes only; never an admin key.",
    ),
    "adminKey": SecurityScheme(type="http", scheme="bearer", description="An admin key (keep it on servers)."),
}
_DELIVERY = [{"deliveryKey": []}, {"deliveryKeyQuery": []}]
_ADMIN = [{"adminKey": []}]
_ERRORS = {
    400: "Bad input: `detail` says what, `extra` where (e.g. `entries[2]`)",
    401: "Missing or unknown API key",
    403: "A delivery key on an admin route or for an admin-only option",
    404: "Unknown entry, experience, journey, model or visitor: `detail` names it",
    429: "Rate limit of the key exceeded; retry after `Retry-After` seconds",
}


def complete_openapi(app: Litestar) -> None:
    """Add security schemes and requirements and typed error responses to every guarded route."""
    config = app.openapi_config
    if config is None:
        return
    components = config.components if isinstance(config.components, Components) else None
    if components is None:  # a list of Components: add one more, Litestar merges them
        config.components = [*config.components, Components(security_schemes=dict(SECURITY_SCHEMES))]  # type: ignore[misc]
    else:
        components.security_schemes = {**(components.security_schemes or {}), **SECURITY_SCHEMES}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            guards = handler.resolve_guards()
            if requires_admin in guards:
                security = _ADMIN
            elif requires_delivery in guards:
                security = _DELIVERY
            else:
                continue
            if not handler.security:
                handler.security = security
            responses = dict(handler.responses or {})
            for status, description in _ERRORS.items():
                responses.setdefault(
                    status, ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)
                )
            handler.responses = responses

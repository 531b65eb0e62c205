"""The front-end kit: the browser SDK, the demo site, deferred exposures, and the typed-client schema.

* ``GET /v1/sdk.js`` / ``GET /v1/sdk.mjs``: the dependency-free SDK (classic script / ES module);
* ``GET /v1/sdk-local.mjs``: the local-evaluation SDK (sdk/js) that the kit's local mode imports;
* ``GET /demo``: the demo store personalized by the SDK (``VARY_DEMO_PAGE``, default on);
* ``POST /v1/exposures``: exposures recorded when components are seen (``"exposures": "on_view"``);
* :func:`complete_openapi`: security schemes and error bodies for every route of ``/schema``.
"""

from api.frontend.assets import (
    demo_key,
    demo_page,
    sdk_local_module,
    sdk_module,
    sdk_script,
)
from api.frontend.exposures import (
    exposure_tokens_for,
    record_exposures,
    with_exposure_tokens,
)
from api.frontend.openapi import complete_openapi

__all__ = [
    "FRONTEND_HANDLERS",
    "complete_openapi",
    "demo_key",
    "exposure_tokens_for",
    "with_exposure_tokens",
]

#: Route handlers to register with the app.
FRONTEND_HANDLERS = [sdk_script, sdk_module, sdk_local_module, demo_page, record_exposures]

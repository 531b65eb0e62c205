"""The marketer dashboard at ``/dashboard``: experiences, results, UX and CX, journey maps, models.

Server-rendered (Jinja2 templates through Litestar's template support), charts as inline SVG drawn
in Python (:mod:`api.dashboard.charts`): no build step, no JavaScript, nothing fetched from another
host. :func:`template_config` and :data:`DASHBOARD_HANDLERS` are what ``create_app`` registers.
"""

from __future__ import annotations

from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from api.dashboard.routes import TEMPLATES, dashboard_router, static_router

__all__ = ["DASHBOARD_HANDLERS", "template_config"]

#: The dashboard pages (``/dashboard/...``) and its stylesheet (``/dashboard/static/...``).
DASHBOARD_HANDLERS = [dashboard_router, static_router]


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja2 over the dashboard's templates (autoescaping on)."""
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine)

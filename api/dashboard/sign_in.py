"""The dashboard's sign-in form and sign-out: an admin key in, a signed session cookie out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from api.dashboard.guards import check_origin, safe_next, session_secret
from api.dashboard.session import COOKIE_NAME, SESSION_TTL_S, issue_token
from api.http.handlers import get, post

__all__ = ["SignInController", "SignInForm", "page"]


def page(request: Request, template: str, nav: str, title: str, status_code: int = 200, **context: Any) -> Template:
    """A page with the context every page needs (navigation, whether a sign-out button applies)."""
    return Template(
        template_name=template,
        context={
            "nav": nav,
            "title": title,
            "cookie_session": COOKIE_NAME in request.cookies and not request.headers.get("authorization"),
            **context,
        },
        status_code=status_code,
    )


def _https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


@dataclass
class SignInForm:
    """The sign-in form: the admin key and where to go afterwards."""

    key: str = ""
    next: str = ""


class SignInController(Controller):
    path = "/"

    @get("/sign-in", summary="Dashboard sign-in form")
    async def sign_in_form(
        self, request: Request, next_: Annotated[str | None, QueryParameter(name="next", max_length=512)] = None
    ) -> Template:
        return page(request, "sign_in.html", "sign-in", "Sign in", next=safe_next(next_), message=None)

    @post("/sign-in", status_code=303, summary="Sign in with an admin key")
    async def sign_in(self, request: Request, data: URLEncodedBody[SignInForm]) -> Template | Redirect:
        """A valid admin key sets the session cookie and goes on; anything else shows the form again
        with what was wrong (400 empty, 401 unknown, 403 delivery key)."""
        check_origin(request)
        target = safe_next(data.next)
        key = data.key.strip()
        scope = request.app.state.key_ring.scope_of(key) if key else None
        if scope != "admin":
            status, message = {
                None: (401, "That key is not a Vary key. Check it and try again."),
                "delivery": (403, "That is a delivery key; the dashboard needs an admin key."),
            }[scope]
            if not key:
                status, message = 400, "Enter an admin key."
            return page(request, "sign_in.html", "sign-in", "Sign in", status_code=status, next=target, message=message)
        response = Redirect(path=target, status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            issue_token(session_secret(request), time.time()),
            max_age=SESSION_TTL_S,
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=_https(request),
        )
        return response

    @post("/sign-out", status_code=303, summary="End the dashboard session")
    async def sign_out(self, request: Request) -> Redirect:
        check_origin(request)
        response = Redirect(path="/dashboard/sign-in", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/dashboard")
        return response

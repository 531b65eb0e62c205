"""The dashboard's sign-in form and sign-out: an admin key in, a signed session cookie out.

Sign-in records the session in Redis and sign-out deletes it, so the cookie stops working on every
worker at once; "sign out everywhere" ends every session begun so far (a stolen cookie too). See
:mod:`api.dashboard.session`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from api.dashboard.guards import check_origin, requires_dashboard, safe_next, session_secret, signed_session
from api.dashboard.session import (
    COOKIE_NAME,
    SESSION_TTL_S,
    begin_session,
    end_every_session,
    end_session,
    issue_token,
)
from api.http.common import runtime_of
from api.http.handlers import get, post

__all__ = ["SignInController", "SignInForm", "page"]


def page(
    request: Request, template: str, nav: str, title: str, status_code: int = 200,
    headers: dict[str, str] | None = None, **context: Any,
) -> Template:
    """A page with the context every page needs (navigation, whether a sign-out button applies)."""
    return Template(
        template_name=template,
        headers=headers,
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
        token = issue_token(session_secret(request), time.time())
        await begin_session(runtime_of(request.app.state).redis, token)
        response = Redirect(path=target, status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            token,
            max_age=SESSION_TTL_S,
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=_https(request),
        )
        return response

    @post("/sign-out", status_code=303, summary="End the dashboard session")
    async def sign_out(self, request: Request) -> Redirect:
        """Ends this session server-side (the cookie is dead even if a copy of it survives)."""
        check_origin(request)
        token = signed_session(request)
        if token is not None:
            await end_session(runtime_of(request.app.state).redis, token)
        return _to_sign_in()

    @post(
        "/sign-out-everywhere", status_code=303, guards=[requires_dashboard],
        summary="End every dashboard session, on every browser",
    )
    async def sign_out_everywhere(self, request: Request) -> Redirect:
        """Every session signed in so far is over (for a lost laptop or a leaked cookie)."""
        check_origin(request)
        await end_every_session(runtime_of(request.app.state).redis)
        return _to_sign_in()


def _to_sign_in() -> Redirect:
    response = Redirect(path="/dashboard/sign-in", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/dashboard")
    return response

"""Login, logout and the guard in front of every operator route.

* Every route needs a live session (`__Host-` cookie: Secure, HttpOnly, SameSite=Strict)
  except those in `PUBLIC`; a page asked for without one is sent to the login form (303),
  anything else is answered 401.
* Every POST carries the session's CSRF token (form field `csrf` or header `X-CSRF-Token`),
  else 403; the login form itself carries a token tied to a short-lived cookie (login CSRF).
* Answers carry a strict Content-Security-Policy, no framing, no referrer, no caching.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import i18n, views
from .accounts import Accounts, Session

log = logging.getLogger("safebox.receiver.console")

SESSION_COOKIE = "__Host-sbx-session"
LOGIN_COOKIE = "__Host-sbx-login"
SESSION_KEY = web.RequestKey("session", Session)
PUBLIC = frozenset({("GET", "/login"), ("POST", "/login")})
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def session_of(request: web.Request) -> Session:
    return request[SESSION_KEY]


def _cookie(response: web.StreamResponse, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, path="/", secure=True, httponly=True, samesite="Strict", max_age=max_age)


def guard(accounts: Accounts, clock: Callable[[], float]) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        path = route.canonical if route is not None else request.path
        if (request.method, path) not in PUBLIC:
            session = accounts.session(request.cookies.get(SESSION_COOKIE, ""), now=clock())
            if session is None:
                if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
                    raise web.HTTPSeeOther("/login")
                return _secure(web.json_response({"status": "rejected", "reason": "log in first"}, status=401))
            if request.method not in ("GET", "HEAD"):
                sent = request.headers.get("X-CSRF-Token")
                if sent is None and request.content_type == "application/x-www-form-urlencoded":
                    sent = (await request.post()).get("csrf")
                if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
                    log.warning("refused %s %s by %s: CSRF token missing or wrong", request.method, request.path,
                                session.operator.name)
                    return _secure(web.json_response({"status": "rejected", "reason": "CSRF token missing or wrong"},
                                                     status=403))
            request[SESSION_KEY] = session
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _secure(exc)
            raise
        return _secure(response)
    return middleware


def _secure(response: web.StreamResponse) -> web.StreamResponse:
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class Login:
    def __init__(self, accounts: Accounts, clock: Callable[[], float]) -> None:
        self._accounts = accounts
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.add_routes([web.get("/login", self.form), web.post("/login", self.submit),
                        web.post("/logout", self.logout)])

    async def form(self, request: web.Request, *, error: str | None = None, status: int = 200,
                   name: str = "") -> web.Response:
        token = secrets.token_urlsafe(24)
        lang = i18n.choose(request)
        response = views.render("login.html", lang, status=status, login_csrf=token, error=error,
                                name=name)
        _cookie(response, LOGIN_COOKIE, token, max_age=900)
        return response

    async def submit(self, request: web.Request) -> web.Response:
        form = await request.post()
        sent, kept = form.get("csrf"), request.cookies.get(LOGIN_COOKIE)
        if not isinstance(sent, str) or not kept or not hmac.compare_digest(sent, kept):
            return await self.form(request, error="login_expired", status=403)
        name = str(form.get("name", ""))[:64].strip().lower()
        password = str(form.get("password", ""))
        outcome = self._accounts.login(name, password, now=self._clock())
        if isinstance(outcome, str):
            log.warning("login of %r from %s refused: %s", name, request.remote, outcome)
            return await self.form(request, error=f"login_{outcome}", status=403 if outcome == "locked" else 401,
                                   name=name)
        log.info("operator %s logged in from %s", name, request.remote)
        response = web.Response(status=303, headers={"Location": "/"})
        _cookie(response, SESSION_COOKIE, outcome.token)
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self._accounts.logout(request.cookies.get(SESSION_COOKIE, ""))
        log.info("operator %s logged out", session_of(request).operator.name)
        response = web.Response(status=303, headers={"Location": "/login"})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

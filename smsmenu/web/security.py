"""What every response and form gets: security headers, signed cookies, CSRF tokens.

* Headers: a CSP with no inline script or style and ``frame-ancestors 'none'``, no sniffing,
  no referrer, no caching of pages (they show balances).
* Cookies are HttpOnly and SameSite=Strict (Secure with ``web_secure_cookies``): the login
  (``sessions``) and a random CSRF cookie. Every form carries ``csrf``, the HMAC under
  ``SECRET_KEY`` of that cookie; a POST whose token does not fit changes nothing.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsmenu.web.context import WebContext
from smsmenu.web.refusals import WebRefusal, WebRule

SESSION_COOKIE = "smsmenu_session"
CSRF_COOKIE = "smsmenu_csrf"

HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """ASGI middleware adding ``HEADERS`` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def set_cookie(web: WebContext, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=web.settings.web_secure_cookies,
        path="/",
    )


def csrf_seed(request: Request) -> str:
    """The visitor's CSRF cookie, or a new one (``ensure_csrf_cookie`` sets it)."""
    seed = request.cookies.get(CSRF_COOKIE, "")
    if len(seed) < 20:
        seed = getattr(request.state, "new_csrf", "")
        if not seed:
            seed = request.state.new_csrf = secrets.token_urlsafe(24)
    return str(seed)


def csrf_token(web: WebContext, request: Request) -> str:
    return web.keys.mac("web-csrf", csrf_seed(request))


def ensure_csrf_cookie(web: WebContext, request: Request, response: Response) -> None:
    new = getattr(request.state, "new_csrf", None)
    if new:
        set_cookie(web, response, CSRF_COOKIE, new)


def check_csrf(web: WebContext, request: Request, token: str | None) -> None:
    """BAD_FORM unless ``token`` is the token of this visitor's CSRF cookie."""
    seed = request.cookies.get(CSRF_COOKIE, "")
    expected = web.keys.mac("web-csrf", seed)
    if len(seed) < 20 or not token or not hmac.compare_digest(token, expected):
        raise WebRefusal(WebRule.BAD_FORM)

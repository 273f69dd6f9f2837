"""The ASGI application: the agent, operator and subscriber pages, the API, static files, and
what every response gets (security headers; a refusal as a page message or as the API's JSON
error)."""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from smsmenu.ledger.api import Refusal
from smsmenu.web import agent_pages, api, operator_cards, operator_pages, subscriber_pages
from smsmenu.web.card_imports import ImportJobs
from smsmenu.web.context import WebContext
from smsmenu.web.pages import redirect, render
from smsmenu.web.refusals import WebRefusal, WebRule, explain
from smsmenu.web.security import SecurityHeaders
from smsmenu.web.sessions import WebSessions

log = logging.getLogger("smsmenu.web")
STATIC = Path(__file__).resolve().parent / "static"
_HTTP_RULES = {
    401: WebRule.UNAUTHORIZED,
    403: WebRule.FORBIDDEN,
    404: WebRule.NOT_FOUND,
    405: WebRule.METHOD_NOT_ALLOWED,
}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _refusal(request: Request, exc: Exception) -> Response:
    web: WebContext = request.app.state.web
    assert isinstance(exc, Refusal | WebRefusal)
    if _is_api(request):
        return api.error(web, exc)
    status = exc.status if isinstance(exc, WebRefusal) else 422
    return render(request, "message.html", status, text=explain(web, exc))


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    rule = _HTTP_RULES.get(exc.status_code, WebRule.BAD_REQUEST)
    if exc.status_code >= 500:
        return _internal(request)
    response = await _refusal(request, WebRefusal(rule))
    response.headers.update(exc.headers or {})  # a 405's Allow
    return response


def _internal(request: Request) -> Response:
    web: WebContext = request.app.state.web
    text = web.catalogue.render("internal_error")
    if _is_api(request):
        return JSONResponse({"error": {"rule": "internal_error", "message": text}}, 500)
    return render(request, "message.html", 500, text=text)


async def _error(request: Request, exc: Exception) -> Response:
    log.error("web %s %s failed: %s", request.method, request.url.path, type(exc).__name__)
    return _internal(request)


async def _root(request: Request) -> Response:
    return redirect("/agent/login")


def build_app(web: WebContext) -> Starlette:
    """The pages and the API on ``web``'s ledger."""
    routes = [
        Route("/", _root, methods=["GET"]),
        *api.routes,
        *agent_pages.routes,
        *operator_pages.routes,
        *operator_cards.routes,
        *subscriber_pages.routes,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            Refusal: _refusal,
            WebRefusal: _refusal,
            HTTPException: _http,
            Exception: _error,
        },
    )
    app.state.web = web
    app.state.card_imports = ImportJobs()
    app.state.sessions = WebSessions(
        web.ledger.engine, web.keys, web.clock, web.settings.web_session_s
    )
    return app

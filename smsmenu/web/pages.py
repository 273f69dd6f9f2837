"""What the pages share: rendering with the catalogue, forms with their CSRF token, who is
logged in, and turning a refusal into a message on the page."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from smsmenu.digits import to_int
from smsmenu.ledger.api import Refusal, SubscriberStatus, SubscriberView
from smsmenu.money import format_yuan
from smsmenu.web import audit, operators, security
from smsmenu.web.context import WebContext
from smsmenu.web.refusals import WebRefusal, WebRule, explain
from smsmenu.web.sessions import WebSessions

U = TypeVar("U")
Page = Callable[[Request], Awaitable[Response]]
TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
PAGE_SIZE = 20


def web_of(request: Request) -> WebContext:
    web: WebContext = request.app.state.web
    return web


def sessions_of(request: Request) -> WebSessions:
    sessions: WebSessions = request.app.state.sessions
    return sessions


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    web = web_of(request)
    zone = web.ledger.zone

    def local(when: datetime) -> str:
        return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    context.update(
        t=web.catalogue.render,
        yuan=format_yuan,
        local=local,
        csrf=security.csrf_token(web, request),
    )
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status)
    security.ensure_csrf_cookie(web, request, response)
    return response


def refused(request: Request, name: str, exc: Refusal | WebRefusal, **context: Any) -> Response:
    """``name`` again with the refusal's message (and its status)."""
    status = exc.status if isinstance(exc, WebRefusal) else 422
    return render(request, name, status, error=explain(web_of(request), exc), **context)


async def form_of(request: Request) -> FormData:
    """The posted form, its CSRF token checked (BAD_FORM)."""
    form = await request.form()
    token = form.get("csrf")
    security.check_csrf(web_of(request), request, token if isinstance(token, str) else None)
    return form


def field(form: FormData, name: str, limit: int = 64) -> str:
    """A form's field, trimmed to ``limit``; BAD_REQUEST if it holds a control character
    (no database is asked about a NUL)."""
    value = form.get(name)
    value = value.strip()[:limit] if isinstance(value, str) else ""
    if not value.isprintable():
        raise WebRefusal(WebRule.BAD_REQUEST)
    return value


def number_field(form: FormData, name: str) -> int:
    """A whole number typed in a form; BAD_REQUEST if it is none."""
    value = to_int(field(form, name), 12)
    if value is None:
        raise WebRefusal(WebRule.BAD_REQUEST)
    return value


def day_param(value: str | None, default: date) -> date:
    try:
        return date.fromisoformat(value) if value else default
    except ValueError:
        return default


def page_param(value: str | None) -> int:
    return max(1, min(to_int(value or "1", 6) or 1, 100_000))


def form_key() -> str:
    """The idempotency key a form carries from when it was shown: a double submit of the
    form is one operation."""
    return f"web-{uuid.uuid4().hex}"


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


async def end_login(request: Request, response: Response) -> Response:
    """``response`` with the browser's login ended."""
    await sessions_of(request).end(request.cookies.get(security.SESSION_COOKIE))
    response.delete_cookie(security.SESSION_COOKIE, path="/")
    return response


async def login(request: Request, who: str, url: str, actor: str, how: str) -> Response:
    """Log ``who`` in and go to ``url``; the audit log gets ``actor``'s login (by ``how``)."""
    await audit.record(web_of(request), actor, f"login_{how}", actor, "ok")
    response = redirect(url)
    cookie = await sessions_of(request).create(who)
    security.set_cookie(web_of(request), response, security.SESSION_COOKIE, cookie)
    return response


async def who(request: Request) -> str | None:
    return await sessions_of(request).who(request.cookies.get(security.SESSION_COOKIE))


async def logged_agent(request: Request) -> int | None:
    """The agent logged in (not closed since), or None."""
    found = await who(request)
    if found is None or not found.startswith("agent:"):
        return None
    agent_id = int(found.removeprefix("agent:"))
    try:
        agent = await web_of(request).ledger.agent(agent_id)
    except Refusal:
        return None
    return None if agent.status.value == "closed" else agent_id


async def logged_subscriber(request: Request) -> SubscriberView | None:
    """The subscriber logged in (its account not closed since), or None."""
    found = await who(request)
    if found is None or not found.startswith("subscriber:"):
        return None
    view = await web_of(request).ledger.subscriber(found.removeprefix("subscriber:"))
    return None if view is None or view.status is SubscriberStatus.CLOSED else view


async def logged_operator(request: Request) -> operators.OperatorView | None:
    found = await who(request)
    if found is None or not found.startswith("operator:"):
        return None
    return await operators.get(web_of(request), int(found.removeprefix("operator:")))


def for_user(
    find: Callable[[Request], Awaitable[U | None]], login_page: str
) -> Callable[[Callable[[Request, U], Awaitable[Response]]], Page]:
    """A decorator of pages for the user ``find`` finds logged in (else to ``login_page``)."""

    def decorate(handler: Callable[[Request, U], Awaitable[Response]]) -> Page:
        async def page(request: Request) -> Response:
            user = await find(request)
            if user is None:
                return redirect(login_page)
            return await handler(request, user)

        return page

    return decorate

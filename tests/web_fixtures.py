"""Web fixtures: the ASGI application on the ``ledger`` fixture (SQLite and PostgreSQL), an
HTTP client on it (httpx, no server), API keys, operators, and browser-like form helpers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette

from smsmenu.ledger.api import AgentView, Billing, Kind
from smsmenu.ledger.outbox import Outbox
from smsmenu.ledger.service import LedgerService
from smsmenu.web import apikeys, operators
from smsmenu.web.app import build_app
from smsmenu.web.context import WebContext
from smsmenu.web.payments import SandboxProvider
from tests.ledger_fixtures import new_agent

AGENT_PHONE = "13800000001"
OTHER_PHONE = "13800000005"
MOBILE = "13900000002"
FIXED = "02787654321"
POSTPAID_MOBILE = "13900000007"
OPERATOR_PASSWORD = "op-password-1"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class WebWorld:
    web: WebContext
    app: Starlette
    http: httpx.AsyncClient
    agent: AgentView
    other: AgentView

    @property
    def ledger(self) -> LedgerService:
        return self.web.ledger

    async def csrf(self, path: str) -> str:
        """The CSRF token of the form on ``path`` (the page sets its cookie)."""
        page = await self.http.get(path)
        match = _CSRF.search(page.text)
        assert match, page.text
        return match.group(1)

    async def post_form(self, path: str, form_page: str, **fields: str) -> httpx.Response:
        """Submit a form as a browser would: its CSRF token taken from ``form_page``."""
        token = await self.csrf(form_page)
        return await self.http.post(path, data={"csrf": token, **fields})

    async def last_code(self, phone: str) -> str:
        """The one-time code in the newest SMS to ``phone`` (what the phone would read)."""
        rows = await Outbox(self.ledger.engine, self.ledger.clock).rows(destination=phone)
        texts = [row.text for row in rows if row.kind == "web_code"]
        assert texts, f"no code sent to {phone}"
        found = re.search(r"[0-9]{6}", texts[-1])
        assert found
        return found.group(0)


@pytest.fixture
async def web_world(ledger: LedgerService) -> AsyncIterator[WebWorld]:
    agent = await new_agent(ledger, AGENT_PHONE)
    other = await new_agent(ledger, OTHER_PHONE)
    await ledger.add_subscriber(MOBILE, Kind.MOBILE, Billing.PREPAID, 500)
    await ledger.add_subscriber(FIXED, Kind.FIXED, Billing.POSTPAID, -3000)
    await ledger.add_subscriber(POSTPAID_MOBILE, Kind.MOBILE, Billing.POSTPAID, 0)
    web = WebContext.of(ledger, SandboxProvider(ledger.ctx.keys))
    app = build_app(web)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://web.test") as http:
        yield WebWorld(web, app, http, agent, other)


async def api_key(world: WebWorld, scope: str, name: str | None = None) -> dict[str, str]:
    """Authorization headers of a new key of ``scope``."""
    key = await apikeys.create(world.web, name or scope.replace(":", "-"), scope)
    return {"authorization": f"Bearer {key}"}


async def new_operator(world: WebWorld, name: str, role: operators.Role) -> None:
    await operators.create(world.web, name, role, OPERATOR_PASSWORD)

"""The HTTP API under /api/v1 (SPEC §9): the same operations and JSON as the command line.

Every call carries ``Authorization: Bearer KEY`` (``apikeys``); a key scoped to an agent sees
only that agent, and reversals are the operator's (an ``operator`` key). A money call's
``Idempotency-Key`` header becomes the ledger's key (prefixed with the client's name, so two
clients never share one): the same key again returns the first result and moves nothing.
Every refusal is a 4xx ``{"error": {"rule", "message"}}``; input that does not fit is
``bad_request`` before anything is asked of the ledger.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smsmenu.cli import to_jsonable
from smsmenu.digits import to_int
from smsmenu.ledger.api import Kind, RechargeRequest, Refusal, Rule
from smsmenu.ledger.models import MAX_ID
from smsmenu.shapes import agent_json, recharge_json, subscriber_json
from smsmenu.web import apikeys, audit
from smsmenu.web.context import WebContext
from smsmenu.web.openapi import DOCUMENT
from smsmenu.web.refusals import WebRefusal, WebRule, explain

MAX_KEY = 100
MAX_TEXT = 32
MAX_FEN = 10**12
_NOT_FOUND = {Rule.AGENT_UNKNOWN, Rule.RECHARGE_UNKNOWN}
_RECHARGE_FIELDS = {"agent_id", "kind", "number", "amount_fen", "pin", "notify"}


def refusal_status(refusal: Refusal) -> int:
    if refusal.rule in _NOT_FOUND:
        return 404
    return 409 if refusal.rule is Rule.KEY_REUSED else 422


def error(web: WebContext, exc: Refusal | WebRefusal) -> JSONResponse:
    """The one error shape: the rule as the command line names it, and its text."""
    status = refusal_status(exc) if isinstance(exc, Refusal) else exc.status
    message = explain(web, exc)
    return JSONResponse({"error": {"rule": exc.rule.value, "message": message}}, status)


def _web(request: Request) -> WebContext:
    web: WebContext = request.app.state.web
    return web


async def client_of(request: Request, *params: str) -> apikeys.ApiClient:
    """The caller, by its key (UNAUTHORIZED); a query parameter other than ``params`` is
    BAD_REQUEST."""
    if not set(request.query_params) <= set(params):
        raise WebRefusal(WebRule.BAD_REQUEST)
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    found = await apikeys.client(_web(request), key.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        raise WebRefusal(WebRule.UNAUTHORIZED)
    return found


def _int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WebRefusal(WebRule.BAD_REQUEST)
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or "\x00" in value:
        raise WebRefusal(WebRule.BAD_REQUEST)
    return value


def _path_id(request: Request, name: str, unknown: Rule) -> int:
    """An id in the path; beyond the ids the database holds it is unknown (``unknown``)."""
    value: int = request.path_params[name]
    if not 0 <= value <= MAX_ID:
        raise Refusal(unknown)
    return value


def _idempotency_key(request: Request, client: apikeys.ApiClient) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise WebRefusal(WebRule.BAD_REQUEST)
    return f"api:{client.name}:{key}"


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise WebRefusal(WebRule.BAD_REQUEST) from None


def _operator(client: apikeys.ApiClient) -> None:
    """Operations of the operator's own staff (SPEC §7): not for an agent's key."""
    if client.agent_id is not None:
        raise WebRefusal(WebRule.FORBIDDEN)


async def _json_body(request: Request, fields: set[str]) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise WebRefusal(WebRule.BAD_REQUEST) from None
    if not isinstance(body, dict) or not set(body) <= fields:
        raise WebRefusal(WebRule.BAD_REQUEST)
    return body


async def get_agent(request: Request) -> Response:
    web, client = _web(request), await client_of(request)
    agent_id = _path_id(request, "agent_id", Rule.AGENT_UNKNOWN)
    if not client.may_see(agent_id):
        raise WebRefusal(WebRule.FORBIDDEN)
    return JSONResponse(agent_json(await web.ledger.agent(agent_id)))


async def post_recharge(request: Request) -> Response:
    web, client = _web(request), await client_of(request)
    key = _idempotency_key(request, client)
    if key is None:
        raise WebRefusal(WebRule.IDEMPOTENCY_KEY_MISSING)
    body = await _json_body(request, _RECHARGE_FIELDS)
    agent_id = _int(body.get("agent_id"), 0, MAX_ID)
    kind = _text(body.get("kind"))
    if kind not in Kind.__members__.values():
        raise WebRefusal(WebRule.BAD_REQUEST)
    notify = body.get("notify")
    recharge = RechargeRequest(
        agent_id,
        Kind(kind),
        _text(body.get("number")),
        _int(body.get("amount_fen"), -MAX_FEN, MAX_FEN),
        _text(body.get("pin")),
        key,
        None if notify is None else _text(notify),
    )
    if not client.may_see(agent_id):
        raise WebRefusal(WebRule.FORBIDDEN)
    view = await audit.audited(
        web,
        f"apikey:{client.name}",
        "recharge",
        f"agent:{agent_id}",
        lambda: web.ledger.recharge(recharge),
    )
    return JSONResponse(recharge_json(view, web.ledger.zone), 201)


async def list_recharges(request: Request) -> Response:
    web, client = _web(request), await client_of(request, "agent_id", "from", "to")
    query = request.query_params
    raw_agent = query.get("agent_id")
    agent_id = to_int(raw_agent, 10) if raw_agent is not None else None
    if agent_id is None or agent_id > MAX_ID:
        raise WebRefusal(WebRule.BAD_REQUEST)
    first, last = _day(query.get("from")), _day(query.get("to"))
    if not client.may_see(agent_id):
        raise WebRefusal(WebRule.FORBIDDEN)
    ledger = web.ledger
    await ledger.agent(agent_id)
    lower = ledger.day_bounds(first)[0] if first else None
    upper = ledger.day_bounds(last)[1] if last else None
    views = await ledger.recharges(agent_id, lower, upper)
    return JSONResponse([recharge_json(v, ledger.zone) for v in views])


async def post_reversal(request: Request) -> Response:
    web, client = _web(request), await client_of(request)
    tx_id = _path_id(request, "tx_id", Rule.RECHARGE_UNKNOWN)
    _operator(client)
    key = _idempotency_key(request, client) or f"api-reversal:{tx_id}"
    actor, reverse = f"apikey:{client.name}", web.ledger.reverse
    view = await audit.audited(web, actor, "reversal", f"tx:{tx_id}", lambda: reverse(tx_id, key))
    return JSONResponse(to_jsonable(view, web.ledger.zone), 201)


async def post_deposit(request: Request) -> Response:
    """续存 into an agent's float (``agent deposit``); the Idempotency-Key makes it once."""
    web, client = _web(request), await client_of(request)
    _operator(client)
    agent_id = _path_id(request, "agent_id", Rule.AGENT_UNKNOWN)
    key = _idempotency_key(request, client)
    if key is None:
        raise WebRefusal(WebRule.IDEMPOTENCY_KEY_MISSING)
    amount = _int((await _json_body(request, {"amount_fen"})).get("amount_fen"), 0, MAX_FEN)
    deposit = web.ledger.deposit
    await audit.audited(
        web,
        f"apikey:{client.name}",
        "deposit",
        f"agent:{agent_id}",
        lambda: deposit(agent_id, amount, key),
    )
    return JSONResponse(agent_json(await web.ledger.agent(agent_id)), 201)


_OPEN_FIELDS = {"phone", "trade_pin", "mgmt_pin", "deposit_fen", "commission_bp"}


async def post_agent(request: Request) -> Response:
    """Open an agent (``agent open``); the Idempotency-Key makes it once."""
    web, client = _web(request), await client_of(request)
    _operator(client)
    key = _idempotency_key(request, client)
    if key is None:
        raise WebRefusal(WebRule.IDEMPOTENCY_KEY_MISSING)
    body = await _json_body(request, _OPEN_FIELDS)
    phone, trade, mgmt = (_text(body.get(name)) for name in ("phone", "trade_pin", "mgmt_pin"))
    deposit = _int(body.get("deposit_fen"), 0, MAX_FEN)
    rate = body.get("commission_bp")
    bp = None if rate is None else _int(rate, 0, 10_000)
    open_agent = web.ledger.open_agent
    view = await audit.audited(
        web,
        f"apikey:{client.name}",
        "agent_open",
        f"phone:{phone}",
        lambda: open_agent(phone, trade, mgmt, deposit, bp, key),
    )
    return JSONResponse(agent_json(view), 201)


async def post_agent_status(request: Request) -> Response:
    """Suspend or resume an agent: ``{"status": "suspended" | "active"}``."""
    web, client = _web(request), await client_of(request)
    _operator(client)
    agent_id = _path_id(request, "agent_id", Rule.AGENT_UNKNOWN)
    status = _text((await _json_body(request, {"status"})).get("status"))
    ledger = web.ledger
    change = {"suspended": ledger.suspend_agent, "active": ledger.resume_agent}.get(status)
    if change is None:
        raise WebRefusal(WebRule.BAD_REQUEST)
    view = await audit.audited(
        web,
        f"apikey:{client.name}",
        f"agent_{status}",
        f"agent:{agent_id}",
        lambda: change(agent_id),
    )
    return JSONResponse(agent_json(view))


async def get_subscriber(request: Request) -> Response:
    """One subscriber account with its validity and allowances (``subscriber show``)."""
    web, client = _web(request), await client_of(request)
    _operator(client)
    number = _text(request.path_params["number"])
    view = await web.ledger.subscriber(number)
    if view is None:
        raise WebRefusal(WebRule.NOT_FOUND)
    return JSONResponse(subscriber_json(view, held=True))


async def recharges(request: Request) -> Response:
    """One route for both methods, so that a 405 lists both (``Allow``)."""
    if request.method == "POST":
        return await post_recharge(request)
    return await list_recharges(request)


async def openapi(request: Request) -> Response:
    return JSONResponse(DOCUMENT)


routes = [
    Route("/api/v1/openapi.json", openapi, methods=["GET"]),
    Route("/api/v1/agents", post_agent, methods=["POST"]),
    Route("/api/v1/agents/{agent_id:int}", get_agent, methods=["GET"]),
    Route("/api/v1/agents/{agent_id:int}/status", post_agent_status, methods=["POST"]),
    Route("/api/v1/agents/{agent_id:int}/deposits", post_deposit, methods=["POST"]),
    Route("/api/v1/subscribers/{number}", get_subscriber, methods=["GET"]),
    Route("/api/v1/recharges", recharges, methods=["GET", "POST"]),
    Route("/api/v1/recharges/{tx_id:int}/reversal", post_reversal, methods=["POST"]),
]

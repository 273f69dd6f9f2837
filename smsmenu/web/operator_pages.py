"""The operator's pages (SPEC §7): staff and supervisors log in with the accounts made by
``smsmenu operator create``; open an agent, deposit, suspend/resume, close, reverse a recharge
(supervisors only), subscribers (add, show, close at the counter), the daily report over a
date range with a chart, and the audit log. Every operation is written to the audit log, with
its refusal's rule."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from smsmenu.digits import to_int
from smsmenu.ledger.api import Billing, DailyReportRow, Kind, Refusal, Rule
from smsmenu.ledger.models import MAX_ID, agents
from smsmenu.money import format_yuan, parse_yuan
from smsmenu.web import audit, operators
from smsmenu.web.operators import OperatorView, Role
from smsmenu.web.pages import (
    PAGE_SIZE,
    day_param,
    field,
    for_user,
    form_key,
    form_of,
    logged_operator,
    login,
    number_field,
    page_param,
    redirect,
    refused,
    render,
    web_of,
)
from smsmenu.web.refusals import WebRefusal, WebRule, explain

LOGIN = "/operator/login"
MAX_REPORT_DAYS = 62


operator_page = for_user(logged_operator, LOGIN)


async def audited(
    request: Request,
    operator: OperatorView,
    action: str,
    target: str,
    run: Callable[[], Awaitable[Any]],
) -> Any:
    """Run an operation of ``operator`` with its audit entry."""
    return await audit.audited(web_of(request), f"operator:{operator.name}", action, target, run)


def _tx_id(form: FormData) -> int:
    """The transaction id typed in a form (RECHARGE_UNKNOWN beyond any id)."""
    tx_id = number_field(form, "tx_id")
    if tx_id > MAX_ID:
        raise Refusal(Rule.RECHARGE_UNKNOWN)
    return tx_id


def _yuan(text: str, rule: Rule) -> int:
    fen = parse_yuan(text)
    if fen is None:
        raise Refusal(rule)
    return fen


# ---- login, home --------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    return render(request, "operator_login.html")


async def login_post(request: Request) -> Response:
    try:
        form = await form_of(request)
        operator = await operators.login(
            web_of(request), field(form, "name"), field(form, "password", 200)
        )
    except WebRefusal as exc:
        return refused(request, "operator_login.html", exc)
    who, actor = f"operator:{operator.id}", f"operator:{operator.name}"
    return await login(request, who, "/operator", actor, "password")


async def home(request: Request, operator: OperatorView) -> Response:
    return render(request, "operator_home.html", operator=operator, key=form_key())


async def agents_page(request: Request, operator: OperatorView) -> Response:
    """Every agent, newest first, a page at a time."""
    web, page = web_of(request), page_param(request.query_params.get("page"))
    ids = select(agents.c.id).order_by(agents.c.id.desc())
    async with web.ledger.engine.connect() as conn:
        found = await conn.execute(ids.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE))
        agent_ids = [row.id for row in found]
    shown = [await web.ledger.agent(agent_id) for agent_id in agent_ids[:PAGE_SIZE]]
    context: dict[str, Any] = {"operator": operator, "agents": shown, "page": page}
    return render(request, "operator_agents.html", more=len(agent_ids) > PAGE_SIZE, **context)


async def find_agent(request: Request, operator: OperatorView) -> Response:
    agent_id = to_int(request.query_params.get("agent_id", ""), 9)
    return redirect(f"/operator/agents/{agent_id}" if agent_id is not None else "/operator")


# ---- agents -------------------------------------------------------------------------------


async def open_form(request: Request, operator: OperatorView) -> Response:
    return render(request, "operator_open.html", operator=operator, key=form_key(), values={})


async def open_post(request: Request, operator: OperatorView) -> Response:
    web, values = web_of(request), {}
    try:
        form = await form_of(request)
        values = {name: field(form, name, 16) for name in ("phone", "deposit", "commission_bp")}
        commission = to_int(values["commission_bp"], 5) if values["commission_bp"] else None
        if values["commission_bp"] and commission is None:
            raise Refusal(Rule.BAD_COMMISSION)
        deposit = _yuan(values["deposit"], Rule.OPENING_DEPOSIT_TOO_SMALL)
        trade, mgmt = field(form, "trade_pin", 16), field(form, "mgmt_pin", 16)
        agent = await audited(
            request,
            operator,
            "open_agent",
            f"phone:{values['phone']}",
            lambda: web.ledger.open_agent(
                values["phone"], trade, mgmt, deposit, commission, field(form, "key", 40)
            ),
        )
    except (Refusal, WebRefusal) as exc:
        context = {"operator": operator, "key": form_key(), "values": values}
        return refused(request, "operator_open.html", exc, **context)
    return redirect(f"/operator/agents/{agent.agent_id}")


async def _agent_page(
    request: Request, operator: OperatorView, agent_id: int, status: int = 200, **extra: Any
) -> Response:
    web = web_of(request)
    try:
        agent = await web.ledger.agent(agent_id)
    except Refusal as exc:
        return render(request, "message.html", 404, operator=operator, text=explain(web, exc))
    views = (await web.ledger.recharges(agent_id))[:PAGE_SIZE]
    context = {"operator": operator, "agent": agent, "recharges": views, "key": form_key()}
    return render(request, "operator_agent.html", status, **context, **extra)


def _agent_id(request: Request) -> int:
    value: int = request.path_params["agent_id"]
    return value if value <= MAX_ID else 0


async def agent_page(request: Request, operator: OperatorView) -> Response:
    return await _agent_page(request, operator, _agent_id(request))


async def agent_action(request: Request, operator: OperatorView) -> Response:
    """Deposit, suspend, resume, close or change the bound phone of the agent of the page."""
    web, agent_id = web_of(request), _agent_id(request)
    ledger = web.ledger
    action = str(request.path_params["action"])
    try:
        form = await form_of(request)
        key = field(form, "key", 40) or form_key()
        runs: dict[str, Callable[[], Awaitable[Any]]] = {
            "suspend": lambda: ledger.suspend_agent(agent_id),
            "resume": lambda: ledger.resume_agent(agent_id),
            "close": lambda: ledger.close_agent(agent_id, key),
        }
        if action == "deposit":
            amount = _yuan(field(form, "amount", 16), Rule.BAD_DEPOSIT)
            runs["deposit"] = lambda: ledger.deposit(agent_id, amount, key)
        if action == "phone":
            phone = field(form, "phone", 16)
            runs["phone"] = lambda: ledger.change_phone(agent_id, phone)
        if action not in runs:
            raise WebRefusal(WebRule.NOT_FOUND)
        done = await audited(request, operator, action, f"agent:{agent_id}", runs[action])
    except (Refusal, WebRefusal) as exc:
        status = exc.status if isinstance(exc, WebRefusal) else 422
        return await _agent_page(request, operator, agent_id, status, error=explain(web, exc))
    paid_out = getattr(done, "paid_out_fen", 0)
    notice = web.catalogue.render(f"web_done_{action}", paid_out=format_yuan(paid_out))
    return await _agent_page(request, operator, agent_id, notice=notice)


async def invoice(request: Request, operator: OperatorView) -> Response:
    """Mark a recharge's invoice printed: it can no longer be reversed."""
    web = web_of(request)
    context: dict[str, Any] = {"operator": operator, "key": form_key()}
    try:
        form = await form_of(request)
        tx_id = _tx_id(form)
        await audited(
            request,
            operator,
            "invoice",
            f"tx:{tx_id}",
            lambda: web.ledger.mark_invoice_printed(tx_id),
        )
    except (Refusal, WebRefusal) as exc:
        return refused(request, "operator_home.html", exc, rule=exc.rule.value, **context)
    notice = web.catalogue.render("web_invoice_marked", tx_id=tx_id)
    return render(request, "operator_home.html", notice=notice, **context)


async def reversal(request: Request, operator: OperatorView) -> Response:
    """返销 (supervisors only): each refusal names its rule."""
    web = web_of(request)
    context: dict[str, Any] = {"operator": operator, "key": form_key()}
    try:
        form = await form_of(request)
        tx_id = _tx_id(form)

        async def run() -> Any:
            if operator.role is not Role.SUPERVISOR:
                raise WebRefusal(WebRule.SUPERVISOR_ONLY)
            key = field(form, "key", 40) or form_key()
            return await web.ledger.reverse(tx_id, key)

        view = await audited(request, operator, "reversal", f"tx:{tx_id}", run)
    except (Refusal, WebRefusal) as exc:
        rule = exc.rule.value
        return refused(request, "operator_home.html", exc, rule=rule, **context)
    return render(request, "operator_home.html", reversal=view, **context)


# ---- subscribers --------------------------------------------------------------------------


async def subscribers_page(request: Request, operator: OperatorView) -> Response:
    number = request.query_params.get("number", "")
    number = number[:16] if number.isprintable() else ""
    found = await web_of(request).ledger.subscriber(number) if number else None
    context: dict[str, Any] = {
        "operator": operator,
        "number": number,
        "found": found,
        "key": form_key(),
    }
    return render(request, "operator_subscribers.html", **context)


async def subscriber_add(request: Request, operator: OperatorView) -> Response:
    web = web_of(request)
    context: dict[str, Any] = {"operator": operator, "number": "", "found": None, "key": form_key()}
    try:
        form = await form_of(request)
        number, kind = field(form, "number", 16), field(form, "kind")
        billing = field(form, "billing")
        if kind not in Kind.__members__.values() or billing not in Billing.__members__.values():
            raise WebRefusal(WebRule.BAD_REQUEST)
        balance = field(form, "balance", 16) or "0"
        negative = balance.startswith("-")
        fen = _yuan(balance.removeprefix("-"), Rule.BAD_AMOUNT)
        found = await audited(
            request,
            operator,
            "subscriber_add",
            f"number:{number}",
            lambda: web.ledger.add_subscriber(
                number, Kind(kind), Billing(billing), -fen if negative else fen
            ),
        )
    except (Refusal, WebRefusal) as exc:
        return refused(request, "operator_subscribers.html", exc, **context)
    context.update(number=found.number, found=found)
    return render(request, "operator_subscribers.html", **context)


async def subscriber_close(request: Request, operator: OperatorView) -> Response:
    """销户 at the counter (``subscriber close``): identity checked in person, so no code; the
    rules of menu 4 (nothing owed, not a bound phone)."""
    web = web_of(request)
    context: dict[str, Any] = {"operator": operator, "number": "", "found": None}
    try:
        form = await form_of(request)
        number, key = field(form, "number", 16), field(form, "key", 40) or form_key()
        context.update(number=number, found=await web.ledger.subscriber(number), key=form_key())
        closed = await audited(
            request,
            operator,
            "subscriber_close",
            f"number:{number}",
            lambda: web.ledger.close_subscriber(number, key),
        )
    except (Refusal, WebRefusal) as exc:
        return refused(request, "operator_subscribers.html", exc, **context)
    notice = web.catalogue.render(
        "web_subscriber_closed", number=closed.number, refund=format_yuan(closed.refund_fen)
    )
    context.update(found=await web.ledger.subscriber(number), notice=notice)
    return render(request, "operator_subscribers.html", **context)


# ---- report, audit ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartBar:
    label: str
    x: int
    volume_h: int
    commission_h: int


def chart(days: list[tuple[str, int, int]], height: int = 120, width: int = 24) -> list[ChartBar]:
    """Bars of volume and commission per day, scaled to ``height`` (an SVG, no script)."""
    top = max([volume for _, volume, _ in days] + [1])
    return [
        ChartBar(label, i * width, volume * height // top, max(commission, 0) * height // top)
        for i, (label, volume, commission) in enumerate(days)
    ]


async def report(request: Request, operator: OperatorView) -> Response:
    web = web_of(request)
    today = web.ledger.today()
    last = day_param(request.query_params.get("to"), today)
    first = day_param(request.query_params.get("from"), last - timedelta(days=6))
    first = max(first, last - timedelta(days=MAX_REPORT_DAYS - 1))
    rows: list[DailyReportRow] = []
    days: list[tuple[str, int, int]] = []
    day = first
    while day <= last:
        found = await web.ledger.daily_report(day)
        rows.extend(found)
        volume = sum(r.recharged_fen for r in found)
        days.append((day.strftime("%m-%d"), volume, sum(r.commission_fen for r in found)))
        day += timedelta(days=1)
    context: dict[str, Any] = {
        "operator": operator,
        "span": {"from": first.isoformat(), "to": last.isoformat()},
        "rows": rows,
        "bars": chart(days),
        "totals": (sum(d[1] for d in days), sum(d[2] for d in days)),
    }
    return render(request, "operator_report.html", **context)


async def audit_page(request: Request, operator: OperatorView) -> Response:
    page = page_param(request.query_params.get("page"))
    rows = await audit.rows(web_of(request), PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
    context: dict[str, Any] = {"operator": operator, "rows": rows[:PAGE_SIZE], "page": page}
    return render(request, "operator_audit.html", more=len(rows) > PAGE_SIZE, **context)


routes = [
    Route("/operator/login", login_page, methods=["GET"]),
    Route("/operator/login", login_post, methods=["POST"]),
    Route("/operator", operator_page(home), methods=["GET"]),
    Route("/operator/find", operator_page(find_agent), methods=["GET"]),
    Route("/operator/agents", operator_page(agents_page), methods=["GET"]),
    Route("/operator/agents/open", operator_page(open_form), methods=["GET"]),
    Route("/operator/agents/open", operator_page(open_post), methods=["POST"]),
    Route("/operator/agents/{agent_id:int}", operator_page(agent_page), methods=["GET"]),
    Route(
        "/operator/agents/{agent_id:int}/{action}",
        operator_page(agent_action),
        methods=["POST"],
    ),
    Route("/operator/reversal", operator_page(reversal), methods=["POST"]),
    Route("/operator/invoice", operator_page(invoice), methods=["POST"]),
    Route("/operator/subscribers", operator_page(subscribers_page), methods=["GET"]),
    Route("/operator/subscribers", operator_page(subscriber_add), methods=["POST"]),
    Route("/operator/subscribers/close", operator_page(subscriber_close), methods=["POST"]),
    Route("/operator/report", operator_page(report), methods=["GET"]),
    Route("/operator/audit", operator_page(audit_page), methods=["GET"]),
]

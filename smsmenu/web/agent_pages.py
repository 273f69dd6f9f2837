"""The agent's pages (SPEC §9): login by agent id + management password or by bound phone + a
code sent by SMS; balance; recharge with the SMS menu's confirmation figures; the retry list;
records by date range with paging and CSV; password changes; a new bound phone (a code to
it); online float deposit through the payment provider.

The management password's attempts are the ledger's (``LedgerService.verify_mgmt_pin``): the
web login and the SMS menus share one count and one lock-out (SPEC §10).
"""

from __future__ import annotations

import contextlib
import csv
import io
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from smsmenu.digits import to_int
from smsmenu.ledger.api import (
    AgentStatus,
    Kind,
    RechargeRequest,
    RecordView,
    Refusal,
    Rule,
    SubscriberStatus,
)
from smsmenu.ledger.models import MAX_ID
from smsmenu.money import parse_whole_yuan, parse_yuan
from smsmenu.web import audit, codes, payments
from smsmenu.web.pages import (
    PAGE_SIZE,
    day_param,
    end_login,
    field,
    for_user,
    form_key,
    form_of,
    logged_agent,
    login,
    page_param,
    redirect,
    refused,
    render,
    web_of,
)
from smsmenu.web.refusals import WebRefusal, WebRule

KINDS = [kind.value for kind in Kind]
LOGIN = "/agent/login"


agent_page = for_user(logged_agent, LOGIN)


# ---- login --------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    return render(request, "agent_login.html")


async def login_password(request: Request) -> Response:
    web = web_of(request)
    try:
        form = await form_of(request)
        agent_id = to_int(field(form, "agent_id"), 12)
        pin = field(form, "password")
        if agent_id is None or agent_id > MAX_ID:
            raise WebRefusal(WebRule.LOGIN_FAILED)
        if not await web.ledger.verify_mgmt_pin(agent_id, pin):
            raise WebRefusal(WebRule.LOGIN_FAILED)
    except (Refusal, WebRefusal) as exc:
        return refused(request, "agent_login.html", exc)
    who = f"agent:{agent_id}"
    return await login(request, who, "/agent", who, "password")


async def login_code_request(request: Request) -> Response:
    """Send a login code to a bound phone; the page never says whether the phone is one (nor
    that a bound phone had its codes for the hour: only a bound phone can have them)."""
    web = web_of(request)
    try:
        form = await form_of(request)
        phone = field(form, "phone", 16)
        agent = await web.ledger.agent_for_phone(phone) if phone else None
        if agent is not None and agent.status is not AgentStatus.CLOSED:
            with contextlib.suppress(WebRefusal):  # CODE_RATE_LIMITED
                await codes.send(web, phone, "login")
    except (Refusal, WebRefusal) as exc:
        return refused(request, "agent_login.html", exc)
    return render(request, "agent_login.html", phone=phone, code_sent=True)


async def login_code(request: Request) -> Response:
    web = web_of(request)
    try:
        form = await form_of(request)
        phone, code = field(form, "phone", 16), field(form, "code", 12)
        agent = await web.ledger.agent_for_phone(phone)
        if agent is None:
            raise WebRefusal(WebRule.CODE_WRONG)
        locked = await web.ledger.mgmt_lock(agent.agent_id)  # shared with the password login
        if locked is not None:
            raise Refusal(Rule.MGMT_PIN_LOCKED, until=locked)
        if not await codes.check(web, phone, "login", code):
            raise WebRefusal(WebRule.CODE_WRONG)
    except (Refusal, WebRefusal) as exc:
        return refused(request, "agent_login.html", exc, code_sent=True)
    who = f"agent:{agent.agent_id}"
    return await login(request, who, "/agent", who, "code")


async def logout(request: Request) -> Response:
    try:
        await form_of(request)
    except WebRefusal:
        return redirect("/")
    return await end_login(request, redirect("/"))


# ---- balance, recharge, retry -------------------------------------------------------------


async def home(request: Request, agent_id: int) -> Response:
    agent = await web_of(request).ledger.agent(agent_id)
    return render(request, "agent_home.html", agent=agent)


async def recharge_form(request: Request, agent_id: int) -> Response:
    return render(request, "agent_recharge.html", kinds=KINDS, values={})


async def recharge_quote(request: Request, agent_id: int) -> Response:
    """The confirmation: the SMS menu's figures (number, kind, amount, commission, debit)."""
    web, values = web_of(request), {}
    try:
        form = await form_of(request)
        values = {name: field(form, name, 16) for name in ("kind", "number", "amount", "notify")}
        if values["kind"] not in KINDS:
            raise Refusal(Rule.TARGET_KIND_MISMATCH)
        amount = parse_whole_yuan(values["amount"])
        if amount is None:
            raise Refusal(Rule.BAD_AMOUNT)
        quote = await web.ledger.quote(
            agent_id, Kind(values["kind"]), values["number"], amount, values["notify"] or None
        )
    except (Refusal, WebRefusal) as exc:
        return refused(request, "agent_recharge.html", exc, kinds=KINDS, values=values)
    return render(request, "agent_confirm.html", quote=quote, key=form_key())


async def recharge_confirm(request: Request, agent_id: int) -> Response:
    web = web_of(request)
    try:
        form = await form_of(request)
        kind, number = field(form, "kind"), field(form, "number", 16)
        amount = to_int(field(form, "amount_fen"), 9)
        if kind not in KINDS or amount is None:
            raise WebRefusal(WebRule.BAD_REQUEST)
        request_ = RechargeRequest(
            agent_id,
            Kind(kind),
            number,
            amount,
            field(form, "pin", 16),
            field(form, "key", 40) or form_key(),
            field(form, "notify", 16) or None,
        )
        view = await web.ledger.recharge(request_)
    except (Refusal, WebRefusal) as exc:
        return refused(request, "agent_recharge.html", exc, kinds=KINDS, values={})
    return render(request, "agent_result.html", view=view)


async def retry_page(request: Request, agent_id: int) -> Response:
    views = await web_of(request).ledger.retry_list(agent_id)
    return render(request, "agent_retry.html", views=views, key=form_key())


async def retry_run(request: Request, agent_id: int) -> Response:
    web = web_of(request)
    try:
        form = await form_of(request)
        tx_id = to_int(field(form, "tx_id"), 18)
        if tx_id is None:
            raise WebRefusal(WebRule.BAD_REQUEST)
        if tx_id > MAX_ID:
            raise Refusal(Rule.NOT_RETRYABLE)
        view = await web.ledger.retry(
            agent_id, tx_id, field(form, "pin", 16), field(form, "key", 40) or form_key()
        )
    except (Refusal, WebRefusal) as exc:
        views = await web.ledger.retry_list(agent_id)
        return refused(request, "agent_retry.html", exc, views=views, key=form_key())
    return render(request, "agent_result.html", view=view)


# ---- records ------------------------------------------------------------------------------


async def _records(request: Request, agent_id: int) -> tuple[dict[str, str], list[RecordView]]:
    web = web_of(request)
    ledger, today = web.ledger, web.ledger.today()
    first = day_param(request.query_params.get("from"), today.replace(day=1))
    last = day_param(request.query_params.get("to"), today)
    rows = await ledger.records(agent_id, ledger.day_bounds(first)[0], ledger.day_bounds(last)[1])
    return {"from": first.isoformat(), "to": last.isoformat()}, list(rows)


async def records(request: Request, agent_id: int) -> Response:
    span, rows = await _records(request, agent_id)
    page = page_param(request.query_params.get("page"))
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(page, pages)
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    return render(request, "agent_records.html", span=span, rows=shown, page=page, pages=pages)


async def records_csv(request: Request, agent_id: int) -> Response:
    web = web_of(request)
    span, rows = await _records(request, agent_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(web.catalogue.render("web_csv_header").split(","))
    zone = web.ledger.zone
    for row in rows:
        writer.writerow(
            [
                row.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
                web.catalogue.render(f"record_{row.kind}"),
                row.number or "",
                f"{row.amount_fen / 100:.2f}",
                row.tx_id,
            ]
        )
    name = f"records-{agent_id}-{span['from']}-{span['to']}.csv"
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


# ---- passwords, bound phone ---------------------------------------------------------------


async def passwords_page(request: Request, agent_id: int) -> Response:
    return render(request, "agent_passwords.html")


async def password_change(request: Request, agent_id: int) -> Response:
    web = web_of(request)
    try:
        form = await form_of(request)
        which = field(form, "which")
        old, new = field(form, "old", 16), field(form, "new", 16)
        if new != field(form, "again", 16):
            raise WebRefusal(WebRule.PASSWORDS_DIFFER)
        if which == "trade":
            await web.ledger.change_trade_pin(agent_id, old, new)
        elif which == "mgmt":
            await web.ledger.change_mgmt_pin(agent_id, old, new)
        else:
            raise WebRefusal(WebRule.BAD_REQUEST)
    except (Refusal, WebRefusal) as exc:
        return refused(request, "agent_passwords.html", exc)
    await audit.record(web, f"agent:{agent_id}", f"password_{which}", f"agent:{agent_id}", "ok")
    notice = web.catalogue.render(f"agent_{which}_pin_changed")
    return render(request, "agent_passwords.html", notice=notice)


async def phone_page(request: Request, agent_id: int) -> Response:
    return render(request, "agent_phone.html")


async def _bindable(request: Request, phone: str) -> None:
    """The refusal ``change_phone`` would give, before a code is sent to ``phone``."""
    ledger = web_of(request).ledger
    found = await ledger.subscriber(phone)
    if found is None:
        raise Refusal(Rule.PHONE_UNKNOWN)
    if found.kind is not Kind.MOBILE:
        raise Refusal(Rule.PHONE_NOT_MOBILE)
    if found.status is not SubscriberStatus.ACTIVE:
        raise Refusal(Rule.PHONE_NOT_ACTIVE)
    if await ledger.agent_id_for_phone(phone) is not None:
        raise Refusal(Rule.PHONE_ALREADY_BOUND)


async def phone_code(request: Request, agent_id: int) -> Response:
    web = web_of(request)
    try:
        form = await form_of(request)
        phone = field(form, "phone", 16)
        await _bindable(request, phone)
        await codes.send(web, phone, f"bind:{agent_id}")
    except (Refusal, WebRefusal) as exc:
        return refused(request, "agent_phone.html", exc)
    return render(request, "agent_phone.html", phone=phone, code_sent=True)


async def phone_confirm(request: Request, agent_id: int) -> Response:
    web = web_of(request)
    try:
        form = await form_of(request)
        phone, code = field(form, "phone", 16), field(form, "code", 12)
        if not await codes.check(web, phone, f"bind:{agent_id}", code):
            raise WebRefusal(WebRule.CODE_WRONG)
        agent = await web.ledger.change_phone(agent_id, phone)
    except (Refusal, WebRefusal) as exc:
        return refused(request, "agent_phone.html", exc, phone=None, code_sent=False)
    await audit.record(web, f"agent:{agent_id}", "change_phone", f"agent:{agent_id}", "ok")
    notice = web.catalogue.render("web_phone_changed", phone=agent.phone)
    return render(request, "agent_phone.html", notice=notice)


# ---- online deposit -----------------------------------------------------------------------


async def deposit_page(request: Request, agent_id: int) -> Response:
    """The deposit form; ``?paid=<id>``: where the provider sends the agent back."""
    web = web_of(request)
    paid = await _own_payment(request, agent_id, request.query_params.get("paid", ""))
    agent = await web.ledger.agent(agent_id) if paid is not None else None
    context: dict[str, Any] = {"enabled": web.payments is not None, "paid": paid, "agent": agent}
    return render(request, "agent_deposit.html", **context)


async def deposit_start(request: Request, agent_id: int) -> Response:
    web = web_of(request)
    try:
        form = await form_of(request)
        amount = parse_yuan(field(form, "amount", 16))
        if amount is None:
            raise Refusal(Rule.BAD_DEPOSIT)
        _, url = await payments.create(web, agent_id, amount)
    except (Refusal, WebRefusal) as exc:
        return refused(request, "agent_deposit.html", exc, enabled=web.payments is not None)
    return redirect(url)


async def _own_payment(
    request: Request, agent_id: int, payment: str
) -> payments.PaymentView | None:
    payment_id = to_int(payment, 9)
    found = await payments.get(web_of(request), payment_id) if payment_id is not None else None
    return found if found is not None and found.agent_id == agent_id else None


async def sandbox_page(request: Request, agent_id: int) -> Response:
    """The sandbox provider's payment page (no real money moves): its button posts the
    provider's signed notification, as a real provider's server would."""
    web = web_of(request)
    payment = await _own_payment(request, agent_id, str(request.path_params["payment_id"]))
    if payment is None or not isinstance(web.payments, payments.SandboxProvider):
        text = web.catalogue.render("web_refusal_not_found")
        return render(request, "message.html", 404, text=text)
    signature = web.payments.signature(payment.id)
    return render(request, "sandbox_pay.html", payment=payment, signature=signature)


async def payment_notify(request: Request) -> Response:
    """A provider's notification that a payment was made: the deposit (once), then the agent
    back to the deposit page. No CSRF token: the provider's signature is its proof."""
    web = web_of(request)
    if web.payments is None or request.path_params["provider"] != web.payments.name:
        raise WebRefusal(WebRule.NOT_FOUND)
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    payment_id = web.payments.confirmed(fields)
    if payment_id is None:
        raise WebRefusal(WebRule.BAD_REQUEST)
    deposit = await audit.audited(
        web,
        f"provider:{web.payments.name}",
        "online_deposit",
        f"payment:{payment_id}",
        lambda: payments.complete(web, payment_id),
    )
    return redirect(f"/agent/deposit?paid={payment_id}&tx={deposit.tx_id}")


routes = [
    Route("/agent/login", login_page, methods=["GET"]),
    Route("/agent/login", login_password, methods=["POST"]),
    Route("/agent/login/code", login_code_request, methods=["POST"]),
    Route("/agent/login/verify", login_code, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/agent", agent_page(home), methods=["GET"]),
    Route("/agent/recharge", agent_page(recharge_form), methods=["GET"]),
    Route("/agent/recharge", agent_page(recharge_quote), methods=["POST"]),
    Route("/agent/recharge/confirm", agent_page(recharge_confirm), methods=["POST"]),
    Route("/agent/retry", agent_page(retry_page), methods=["GET"]),
    Route("/agent/retry", agent_page(retry_run), methods=["POST"]),
    Route("/agent/records", agent_page(records), methods=["GET"]),
    Route("/agent/records.csv", agent_page(records_csv), methods=["GET"]),
    Route("/agent/passwords", agent_page(passwords_page), methods=["GET"]),
    Route("/agent/passwords", agent_page(password_change), methods=["POST"]),
    Route("/agent/phone", agent_page(phone_page), methods=["GET"]),
    Route("/agent/phone/code", agent_page(phone_code), methods=["POST"]),
    Route("/agent/phone/confirm", agent_page(phone_confirm), methods=["POST"]),
    Route("/agent/deposit", agent_page(deposit_page), methods=["GET"]),
    Route("/agent/deposit", agent_page(deposit_start), methods=["POST"]),
    Route("/pay/sandbox/{payment_id:int}", agent_page(sandbox_page), methods=["GET"]),
    Route("/pay/{provider}/notify", payment_notify, methods=["POST"]),
]

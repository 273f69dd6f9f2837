"""The subscriber's pages (SPEC §8 on the web): login by number + a one-time code sent by SMS;
balance, validity and allowances with the last top-ups (menus 1 and 3); a recharge card
redeemed for call credit or a catalogue item (menu 2, the ledger's ``redeem_card``: the card
and phone lock-outs are the ones SMS counts); closing the account (menu 4, the ledger's
``send_closing_code`` and ``close_subscriber``: balance and refusals first, a code by SMS valid
5 minutes for 3 tries, then the confirmation).

Who logs in: a mobile number with an account that is not closed, the code going to that
phone. An agent's bound phone may log in too, for its own subscriber account only (the agent's
pages need the agent's login; codes for the two logins have different purposes); closing it is
refused as by SMS (CLOSE_BOUND_PHONE).
"""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from smsmenu.ledger import rules
from smsmenu.ledger.api import Kind, Refusal, Rule, SubscriberStatus, SubscriberView
from smsmenu.ledger.products import DATA, PLAN
from smsmenu.web import audit, codes
from smsmenu.web.pages import (
    end_login,
    field,
    for_user,
    form_key,
    form_of,
    logged_subscriber,
    login,
    refused,
    render,
    web_of,
)
from smsmenu.web.refusals import WebRefusal, WebRule

LOGIN = "/subscriber/login"
PURPOSE = "subscriber-login"  # not the agent's "login": one code opens one of the two
CREDIT = "credit"  # the card's whole value as call credit (no item)

subscriber_page = for_user(logged_subscriber, LOGIN)


def _actor(view: SubscriberView) -> str:
    return f"subscriber:{view.number}"


def _may_log_in(found: SubscriberView | None) -> bool:
    """A mobile number (it reads the code) whose account is not closed."""
    if found is None:
        return False
    return found.kind is Kind.MOBILE and found.status is not SubscriberStatus.CLOSED


# ---- login --------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    return render(request, "subscriber_login.html")


async def login_code_request(request: Request) -> Response:
    """Send a login code; the page never says whether the number has an account (nor that it
    had its codes for the hour)."""
    web = web_of(request)
    try:
        form = await form_of(request)
        phone = field(form, "phone", 16)
        found = await web.ledger.subscriber(phone) if phone else None
    except WebRefusal as exc:
        return refused(request, "subscriber_login.html", exc)
    if _may_log_in(found):
        with contextlib.suppress(WebRefusal):  # CODE_RATE_LIMITED
            await codes.send(web, phone, PURPOSE)
    return render(request, "subscriber_login.html", phone=phone, code_sent=True)


async def login_code(request: Request) -> Response:
    web, phone = web_of(request), ""
    try:
        form = await form_of(request)
        phone, code = field(form, "phone", 16), field(form, "code", 12)
        if not phone or not await codes.check(web, phone, PURPOSE, code):
            raise WebRefusal(WebRule.CODE_WRONG)
    except WebRefusal as exc:
        return refused(request, "subscriber_login.html", exc, phone=phone, code_sent=True)
    who = f"subscriber:{phone}"
    return await login(request, who, "/subscriber", who, "code")


# ---- balance, top-ups ---------------------------------------------------------------------


async def home(request: Request, view: SubscriberView) -> Response:
    web = web_of(request)
    topups = await web.ledger.subscriber_topups(view.number, 5)
    names = {item.code: item.name for item in web.ledger.products.items}
    return render(request, "subscriber_home.html", sub=view, topups=topups, names=names)


# ---- recharge card ------------------------------------------------------------------------


def _choices(request: Request) -> list[dict[str, Any]]:
    """What a card can pay for: call credit, then the catalogue's data packs and plans."""
    items = web_of(request).ledger.products
    listed = [item for kind in (DATA, PLAN) for item in items.of_kind(kind)]
    return [{"code": CREDIT, "name": None, "price": None, "kind": CREDIT}] + [
        {"code": i.code, "name": i.name, "price": i.price_fen, "kind": i.kind} for i in listed
    ]


async def card_form(request: Request, view: SubscriberView) -> Response:
    return render(request, "subscriber_card.html", choices=_choices(request), values={})


async def card_check(request: Request, view: SubscriberView) -> Response:
    """The confirmation: the card number and what it pays for; the card PIN is typed there."""
    values: dict[str, str] = {}
    choices = _choices(request)
    try:
        form = await form_of(request)
        values = {"card": field(form, "card", 40), "use": field(form, "use", 20)}
        chosen = next((c for c in choices if c["code"] == values["use"]), None)
        if chosen is None:
            raise WebRefusal(WebRule.BAD_REQUEST)
        if not rules.card_number_ok(values["card"]):
            raise Refusal(Rule.CARD_INVALID)
    except (Refusal, WebRefusal) as exc:
        return refused(request, "subscriber_card.html", exc, choices=choices, values=values)
    context: dict[str, Any] = {"card": values["card"], "chosen": chosen, "key": form_key()}
    return render(request, "subscriber_card_confirm.html", **context)


async def card_redeem(request: Request, view: SubscriberView) -> Response:
    web = web_of(request)
    card = ""
    try:
        form = await form_of(request)
        card, use = field(form, "card", 40), field(form, "use", 20)
        pin, key = field(form, "pin", 24), field(form, "key", 40) or form_key()
        redeemed = await audit.audited(
            web,
            _actor(view),
            "card_redeem",
            f"card:{card}",
            lambda: web.ledger.redeem_card(
                view.number, card, pin, None if use == CREDIT else use, key
            ),
        )
    except (Refusal, WebRefusal) as exc:
        context = {"choices": _choices(request), "values": {"card": card}}
        return refused(request, "subscriber_card.html", exc, **context)
    item = web.ledger.products.item(redeemed.item_code) if redeemed.item_code else None
    return render(request, "subscriber_card_result.html", view=redeemed, item=item)


# ---- closing the account (销户) ------------------------------------------------------------


async def close_page(request: Request, view: SubscriberView) -> Response:
    """The balance (refunded) or the refusal: anything owed, a bound phone."""
    try:
        shown = await web_of(request).ledger.closing_check(view.number)
    except Refusal as exc:
        return refused(request, "subscriber_close.html", exc, sub=view, closable=False)
    return render(request, "subscriber_close.html", sub=shown, closable=True)


async def close_code(request: Request, view: SubscriberView) -> Response:
    try:
        await form_of(request)
        shown = await web_of(request).ledger.send_closing_code(view.number)
    except (Refusal, WebRefusal) as exc:
        return refused(request, "subscriber_close.html", exc, sub=view, closable=False)
    context: dict[str, Any] = {"sub": shown, "closable": True, "code_sent": True}
    return render(request, "subscriber_close.html", key=form_key(), **context)


async def close_confirm(request: Request, view: SubscriberView) -> Response:
    web = web_of(request)
    context: dict[str, Any] = {"sub": view, "closable": True}
    try:
        form = await form_of(request)
        code, key = field(form, "code", 12), field(form, "key", 40) or form_key()
        closed = await audit.audited(
            web,
            _actor(view),
            "subscriber_close",
            f"number:{view.number}",
            lambda: web.ledger.close_subscriber(view.number, key, code),
        )
    except (Refusal, WebRefusal) as exc:
        if exc.rule is Rule.CLOSE_CODE_WRONG:  # tries left: the same code form
            context.update(code_sent=True, key=form_key())
        return refused(request, "subscriber_close.html", exc, **context)
    return await end_login(request, render(request, "subscriber_closed.html", closed=closed))


routes = [
    Route("/subscriber/login", login_page, methods=["GET"]),
    Route("/subscriber/login/code", login_code_request, methods=["POST"]),
    Route("/subscriber/login/verify", login_code, methods=["POST"]),
    Route("/subscriber", subscriber_page(home), methods=["GET"]),
    Route("/subscriber/card", subscriber_page(card_form), methods=["GET"]),
    Route("/subscriber/card", subscriber_page(card_check), methods=["POST"]),
    Route("/subscriber/card/confirm", subscriber_page(card_redeem), methods=["POST"]),
    Route("/subscriber/close", subscriber_page(close_page), methods=["GET"]),
    Route("/subscriber/close/code", subscriber_page(close_code), methods=["POST"]),
    Route("/subscriber/close/confirm", subscriber_page(close_confirm), methods=["POST"]),
]

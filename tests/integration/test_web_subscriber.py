"""The subscriber's pages over HTTP (httpx against the ASGI app) on SQLite and PostgreSQL:
login by number + a code sent by SMS, balance with validity, allowances and the last top-ups,
a recharge card redeemed for call credit or a data pack (the lock-out shared with SMS), 销户
with its code, each refusal, and that a login sees only its own number."""

from __future__ import annotations

import re

import httpx
import pytest

from smsmenu.ledger.api import Billing, Kind, RechargeRequest, Refusal, Rule, SubscriberStatus
from smsmenu.ledger.outbox import Outbox
from smsmenu.ledger.service import LedgerService
from smsmenu.web import audit, codes
from tests.ledger_fixtures import TRADE_PIN
from tests.web_fixtures import AGENT_PHONE, FIXED, MOBILE, POSTPAID_MOBILE, WebWorld

LOGIN = "/subscriber/login"
OWING = "13900000009"
CARDS = (
    "number,pin,value,expires\n"
    "1000000001,123456,50,2027-01-31\n"
    "1000000002,654321,30.00,2027-01-31\n"
)


async def sms(world: WebWorld, phone: str, kind: str) -> list[str]:
    rows = await Outbox(world.ledger.engine, world.ledger.clock).rows(destination=phone)
    return [row.text for row in rows if row.kind == kind]


async def log_in(world: WebWorld, phone: str = MOBILE) -> httpx.Response:
    sent = await world.post_form("/subscriber/login/code", LOGIN, phone=phone)
    assert sent.status_code == 200
    code = await world.last_code(phone)
    assert code not in sent.text
    return await world.post_form("/subscriber/login/verify", LOGIN, phone=phone, code=code)


async def import_cards(ledger: LedgerService) -> None:
    await ledger.import_cards("B1", ledger.parse_cards(CARDS))


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


async def test_pages_need_a_subscriber_login(web_world: WebWorld) -> None:
    for path in ("/subscriber", "/subscriber/card", "/subscriber/close"):
        response = await web_world.http.get(path)
        assert response.status_code == 303 and response.headers["location"] == LOGIN
    await web_world.post_form(  # an agent's login is no subscriber's
        "/agent/login", "/agent/login", agent_id=str(web_world.agent.agent_id), password="246801"
    )
    assert (await web_world.http.get("/subscriber")).status_code == 303


async def test_login_by_code_shows_balance_validity_and_topups(web_world: WebWorld) -> None:
    ledger = web_world.ledger
    await ledger.recharge(
        RechargeRequest(web_world.agent.agent_id, Kind.MOBILE, MOBILE, 5000, TRADE_PIN, "r1")
    )
    response = await log_in(web_world)
    assert response.status_code == 303 and response.headers["location"] == "/subscriber"
    assert "httponly" in response.headers["set-cookie"].lower()
    page = await web_world.http.get("/subscriber")
    assert page.status_code == 200
    view = await ledger.subscriber(MOBILE)
    assert view is not None and view.valid_until is not None
    assert re.search(r'id="balance">55\.00元<', page.text)
    assert f'id="valid-until">{view.valid_until.isoformat()}<' in page.text
    topups = page.text.split('id="topups"')[1]
    assert "50.00元" in topups
    entries = [(r.actor, r.action, r.outcome) for r in await audit.rows(web_world.web, 5)]
    assert (f"subscriber:{MOBILE}", "login_code", "ok") in entries


async def test_a_code_is_used_once_and_takes_three_tries(web_world: WebWorld) -> None:
    await web_world.post_form("/subscriber/login/code", LOGIN, phone=MOBILE)
    code = await web_world.last_code(MOBILE)
    for _ in range(3):
        bad = await web_world.post_form(
            "/subscriber/login/verify", LOGIN, phone=MOBILE, code=wrong(code)
        )
        assert bad.status_code == 400
        assert web_world.web.catalogue.render("web_refusal_code_wrong") in bad.text
    late = await web_world.post_form("/subscriber/login/verify", LOGIN, phone=MOBILE, code=code)
    assert late.status_code == 400  # three tries taken: the right code no longer opens
    assert (await log_in(web_world)).status_code == 303
    code = await web_world.last_code(MOBILE)
    again = await web_world.post_form("/subscriber/login/verify", LOGIN, phone=MOBILE, code=code)
    assert again.status_code == 400  # used once


async def test_no_code_for_unknown_fixed_or_closed_numbers_and_the_same_page(
    web_world: WebWorld,
) -> None:
    await web_world.ledger.add_subscriber("13900000008", Kind.MOBILE, Billing.PREPAID, 0)
    await web_world.ledger.close_subscriber("13900000008", "counter")
    notice = web_world.web.catalogue.render("web_code_sent_if_subscriber")
    for phone in ("13900000555", FIXED, "13900000008", "x" * 40):
        response = await web_world.post_form("/subscriber/login/code", LOGIN, phone=phone)
        assert response.status_code == 200 and notice in response.text
        assert await sms(web_world, phone[:16], "web_code") == []


async def test_codes_are_rate_limited_per_phone(web_world: WebWorld) -> None:
    limit = web_world.web.settings.web_codes_per_hour
    for _ in range(limit + 2):
        response = await web_world.post_form("/subscriber/login/code", LOGIN, phone=MOBILE)
        assert response.status_code == 200
    assert len(await sms(web_world, MOBILE, "web_code")) == limit


async def test_an_agent_code_opens_no_subscriber_pages(web_world: WebWorld) -> None:
    """A bound phone logs in as a subscriber only with a subscriber login code."""
    await codes.send(web_world.web, AGENT_PHONE, "login")  # the agent login's code
    code = await web_world.last_code(AGENT_PHONE)
    response = await web_world.post_form(
        "/subscriber/login/verify", LOGIN, phone=AGENT_PHONE, code=code
    )
    assert response.status_code == 400
    assert (await web_world.http.get("/subscriber")).status_code == 303


async def test_a_bound_phone_sees_its_own_account_and_cannot_close_it(
    web_world: WebWorld,
) -> None:
    assert (await log_in(web_world, AGENT_PHONE)).status_code == 303
    page = await web_world.http.get("/subscriber")
    assert page.status_code == 200 and AGENT_PHONE in page.text
    assert (await web_world.http.get("/agent")).status_code == 303  # no agent pages
    close = await web_world.http.get("/subscriber/close")
    assert close.status_code == 422 and "绑定手机" in close.text
    assert 'id="close-code"' not in close.text
    refused = await web_world.post_form("/subscriber/close/code", "/subscriber", phone=MOBILE)
    assert refused.status_code == 422
    assert await sms(web_world, AGENT_PHONE, "closing_code") == []
    assert await sms(web_world, MOBILE, "closing_code") == []


async def test_a_login_sees_and_changes_only_its_own_number(web_world: WebWorld) -> None:
    await web_world.ledger.add_subscriber(OWING, Kind.MOBILE, Billing.PREPAID, 777)
    await import_cards(web_world.ledger)
    await log_in(web_world)
    page = await web_world.http.get("/subscriber", params={"number": OWING})
    assert MOBILE in page.text and OWING not in page.text and "7.77元" not in page.text
    fields = {"card": "1000000002", "use": "credit", "pin": "654321", "key": "k-own"}
    done = await web_world.post_form(
        "/subscriber/card/confirm", "/subscriber/card", number=OWING, phone=OWING, **fields
    )
    assert done.status_code == 200
    mine, other = (
        await web_world.ledger.subscriber(MOBILE),
        await web_world.ledger.subscriber(OWING),
    )
    assert mine is not None and other is not None
    assert (mine.balance_fen, other.balance_fen) == (500 + 3000, 777)
    await web_world.post_form("/subscriber/close/code", "/subscriber", number=OWING)
    assert await sms(web_world, OWING, "closing_code") == []
    assert len(await sms(web_world, MOBILE, "closing_code")) == 1


async def test_redeem_a_card_for_a_data_pack(web_world: WebWorld) -> None:
    ledger = web_world.ledger
    await import_cards(ledger)
    await log_in(web_world)
    form = await web_world.http.get("/subscriber/card")
    assert form.status_code == 200
    for item in ledger.products.items:  # the catalogue with its prices
        assert item.name in form.text
    assert "100M流量包（10.00元）" in form.text
    check = await web_world.post_form(
        "/subscriber/card", "/subscriber/card", card="1000000001", use="D100"
    )
    assert check.status_code == 200 and "100M流量包" in check.text
    key = re.search(r'name="key" value="([^"]+)"', check.text)
    assert key
    fields = {"card": "1000000001", "use": "D100", "pin": "123456", "key": key.group(1)}
    done = await web_world.post_form("/subscriber/card/confirm", "/subscriber/card", **fields)
    assert done.status_code == 200, done.text
    result = done.text.split('id="card-result"')[1]
    for figure in ("50.00元", "100M流量包", "40.00元", "45.00元"):
        assert figure in result
    assert "123456" not in done.text
    twice = await web_world.post_form("/subscriber/card/confirm", "/subscriber/card", **fields)
    assert twice.status_code == 200  # a double submit is one redemption
    view = await ledger.subscriber(MOBILE)
    assert view is not None and view.balance_fen == 4500
    assert [a.code for a in view.allowances] == ["D100"]
    home = await web_world.http.get("/subscriber")
    assert "100M流量包" in home.text.split('id="allowances"')[1]
    assert (await ledger.card("1000000001")).status == "redeemed"
    assert len(await sms(web_world, MOBILE, "card")) <= 1
    entries = [(r.action, r.outcome) for r in await audit.rows(web_world.web, 10)]
    assert ("card_redeem", "ok") in entries


async def test_card_refusals_and_the_lock_shared_with_sms(web_world: WebWorld) -> None:
    ledger = web_world.ledger
    await import_cards(ledger)
    await log_in(web_world)
    page = "/subscriber/card"
    bad_use = await web_world.post_form(page, page, card="1000000001", use="NOPE")
    assert bad_use.status_code == 400
    bad_card = await web_world.post_form(page, page, card="12ab", use="credit")
    assert bad_card.status_code == 422 and "充值卡号或密码错误" in bad_card.text
    await ledger.redeem_card(MOBILE, "1000000002", "654321", None, "by-sms")
    used = await web_world.post_form(
        "/subscriber/card/confirm", page, card="1000000002", use="credit", pin="654321", key="u"
    )
    assert used.status_code == 422 and "已使用" in used.text
    fields = {"card": "1000000001", "use": "credit"}
    for n in range(2):
        wrong_pin = await web_world.post_form(
            "/subscriber/card/confirm", page, pin="111111", key=f"w{n}", **fields
        )
        assert wrong_pin.status_code == 422 and "充值卡号或密码错误" in wrong_pin.text
    with pytest.raises(Refusal) as third:  # menu 2 by SMS, the third wrong PIN
        await ledger.redeem_card(MOBILE, "1000000001", "222222", None, "sms-w3")
    assert third.value.rule in (Rule.CARD_INVALID, Rule.CARD_LOCKED)
    locked = await web_world.post_form(
        "/subscriber/card/confirm", page, pin="123456", key="right", **fields
    )
    assert locked.status_code == 422 and "锁定" in locked.text
    view = await ledger.subscriber(MOBILE)
    assert view is not None and view.balance_fen == 500 + 3000  # only the SMS redemption


async def test_close_the_account_with_the_code(web_world: WebWorld) -> None:
    await log_in(web_world)
    shown = await web_world.http.get("/subscriber/close")
    assert shown.status_code == 200 and 'id="closing-balance">5.00元<' in shown.text
    sent = await web_world.post_form("/subscriber/close/code", "/subscriber/close")
    assert sent.status_code == 200 and 'id="close-confirm"' in sent.text
    text = (await sms(web_world, MOBILE, "closing_code"))[-1]
    code = re.findall(r"[0-9]{6}", text)[-1]
    assert code not in sent.text
    bad = await web_world.post_form(
        "/subscriber/close/confirm", "/subscriber/close", code=wrong(code), key="c1"
    )
    assert bad.status_code == 422 and "还可尝试2次" in bad.text
    assert 'id="close-confirm"' in bad.text
    done = await web_world.post_form(
        "/subscriber/close/confirm", "/subscriber/close", code=code, key="c1"
    )
    assert done.status_code == 200
    assert "5.00元" in done.text.split('id="closed"')[1] and code not in done.text
    view = await web_world.ledger.subscriber(MOBILE)
    assert view is not None and view.status is SubscriberStatus.CLOSED
    assert (await web_world.http.get("/subscriber")).status_code == 303  # logged out
    assert (await web_world.ledger.trial_balance()).total_fen == 0
    entries = [(r.actor, r.action, r.outcome) for r in await audit.rows(web_world.web, 10)]
    assert (f"subscriber:{MOBILE}", "subscriber_close", "refused:close_code_wrong") in entries
    assert (f"subscriber:{MOBILE}", "subscriber_close", "ok") in entries
    again = await web_world.post_form("/subscriber/login/code", LOGIN, phone=MOBILE)
    assert again.status_code == 200
    assert len(await sms(web_world, MOBILE, "web_code")) == 1  # no code for a closed number


async def test_an_expired_closing_code_asks_for_a_new_one(web_world: WebWorld) -> None:
    await log_in(web_world)
    await web_world.post_form("/subscriber/close/code", "/subscriber/close")
    code = re.findall(r"[0-9]{6}", (await sms(web_world, MOBILE, "closing_code"))[-1])[-1]
    web_world.ledger.clock.advance(5 * 60 + 1)  # type: ignore[attr-defined]
    late = await web_world.post_form(
        "/subscriber/close/confirm", "/subscriber/close", code=code, key="late"
    )
    assert late.status_code == 422 and "重新办理销户" in late.text
    assert 'id="close-confirm"' not in late.text and 'id="close-code"' in late.text
    view = await web_world.ledger.subscriber(MOBILE)
    assert view is not None and view.status is SubscriberStatus.ACTIVE


async def test_anything_owed_refuses_closing_naming_the_amount(web_world: WebWorld) -> None:
    await web_world.ledger.add_subscriber(OWING, Kind.MOBILE, Billing.POSTPAID, -3000)
    await log_in(web_world, OWING)
    shown = await web_world.http.get("/subscriber/close")
    assert shown.status_code == 422 and "欠费30.00元" in shown.text
    assert 'id="close-code"' not in shown.text
    sent = await web_world.post_form("/subscriber/close/code", "/subscriber/close")
    assert sent.status_code == 422 and "欠费30.00元" in sent.text
    assert await sms(web_world, OWING, "closing_code") == []


async def test_forms_need_their_csrf_token(web_world: WebWorld) -> None:
    await log_in(web_world)
    for path in ("/subscriber/card/confirm", "/subscriber/close/code", "/subscriber/login/code"):
        response = await web_world.http.post(path, data={"csrf": "forged", "phone": MOBILE})
        assert response.status_code == 400, path
    assert await sms(web_world, MOBILE, "closing_code") == []


async def test_postpaid_mobile_logs_in_without_validity(web_world: WebWorld) -> None:
    await log_in(web_world, POSTPAID_MOBILE)
    page = await web_world.http.get("/subscriber")
    assert page.status_code == 200 and 'id="valid-until"' not in page.text
    assert web_world.web.catalogue.render("web_no_allowances") in page.text


async def test_void_expired_and_too_small_cards_are_refused_by_name(web_world: WebWorld) -> None:
    ledger = web_world.ledger
    await import_cards(ledger)
    await log_in(web_world)
    dearest = max(ledger.products.items, key=lambda item: item.price_fen)
    page = "/subscriber/card"
    small = await web_world.post_form(
        f"{page}/confirm", page, card="1000000002", use=dearest.code, pin="654321", key="s"
    )
    assert small.status_code == 422 and "不足以购买" in small.text
    await ledger.void_cards("B1")
    void = await web_world.post_form(
        f"{page}/confirm", page, card="1000000002", use="credit", pin="654321", key="v"
    )
    assert void.status_code == 422 and "已作废" in void.text
    await ledger.import_cards("B2", ledger.parse_cards(CARDS.replace("100000000", "200000000")))
    ledger.clock.advance(90 * 86_400)  # type: ignore[attr-defined]
    await log_in(web_world)  # the login lapsed meanwhile
    expired = await web_world.post_form(
        f"{page}/confirm", page, card="2000000001", use="credit", pin="123456", key="e"
    )
    assert expired.status_code == 422 and "已过期" in expired.text
    assert (await ledger.card("2000000001")).status == "expired"
    view = await ledger.subscriber(MOBILE)
    assert view is not None and view.balance_fen == 500

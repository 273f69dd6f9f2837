"""The agent's pages over HTTP (httpx against the ASGI app) on SQLite and PostgreSQL: logins
(password, code), the shared lock-out, recharge with its confirmation, records and CSV,
passwords, bound phone, online deposit, CSRF, and what never appears on a page."""

from __future__ import annotations

import csv
import io
import re

import httpx
import pytest

from smsmenu.ledger.api import Billing, Kind, Refusal
from smsmenu.ledger.outbox import Outbox
from smsmenu.web import audit, codes
from tests.ledger_fixtures import MGMT_PIN, TRADE_PIN
from tests.web_fixtures import AGENT_PHONE, MOBILE, WebWorld

LOGIN = "/agent/login"


async def login_by_password(
    world: WebWorld, pin: str = MGMT_PIN, agent_id: int | None = None
) -> httpx.Response:
    return await world.post_form(
        LOGIN, LOGIN, agent_id=str(agent_id or world.agent.agent_id), password=pin
    )


async def test_pages_need_a_login(web_world: WebWorld) -> None:
    for path in ("/agent", "/agent/recharge", "/agent/records", "/agent/records.csv"):
        response = await web_world.http.get(path)
        assert response.status_code == 303 and response.headers["location"] == LOGIN


async def test_login_by_password_shows_the_balance(web_world: WebWorld) -> None:
    response = await login_by_password(web_world)
    assert response.status_code == 303 and response.headers["location"] == "/agent"
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    page = await web_world.http.get("/agent")
    assert page.status_code == 200 and "1000.00元" in page.text
    assert MGMT_PIN not in page.text


async def test_wrong_passwords_share_the_sms_lock(web_world: WebWorld) -> None:
    """Web logins count towards the management password's lock of SPEC §10, with the SMS
    menus: two wrong on the web and one wrong by SMS lock both."""
    for _ in range(2):
        response = await login_by_password(web_world, "999999")
        assert response.status_code == 400
        assert web_world.web.catalogue.render("web_refusal_login_failed") in response.text
    with pytest.raises(Refusal) as third:  # the menu's 修改管理密码 with a wrong old one
        await web_world.ledger.change_mgmt_pin(web_world.agent.agent_id, "999999", "258025")
    assert third.value.rule.value == "mgmt_pin_locked"
    locked = await login_by_password(web_world)  # the right one: still locked
    assert locked.status_code == 422 and "锁定" in locked.text
    await web_world.post_form("/agent/login/code", LOGIN, phone=AGENT_PHONE)
    code = await web_world.last_code(AGENT_PHONE)
    by_code = await web_world.post_form("/agent/login/verify", LOGIN, phone=AGENT_PHONE, code=code)
    assert by_code.status_code == 422 and "锁定" in by_code.text  # a code does not get round it
    assert (await web_world.http.get("/agent")).status_code == 303


async def test_unknown_agent_and_bad_input_are_one_message(web_world: WebWorld) -> None:
    for agent_id in ("999", "x", "99999999999999"):
        response = await web_world.post_form(LOGIN, LOGIN, agent_id=agent_id, password=MGMT_PIN)
        assert response.status_code == 400
        assert web_world.web.catalogue.render("web_refusal_login_failed") in response.text


async def test_csrf_is_checked(web_world: WebWorld) -> None:
    response = await web_world.http.post(
        LOGIN, data={"agent_id": str(web_world.agent.agent_id), "password": MGMT_PIN}
    )
    assert response.status_code == 400
    assert "smsmenu_session" not in response.headers.get("set-cookie", "")
    response = await web_world.http.post(
        LOGIN, data={"csrf": "forged", "agent_id": "1", "password": MGMT_PIN}
    )
    assert response.status_code == 400


async def test_login_by_code(web_world: WebWorld) -> None:
    sent = await web_world.post_form("/agent/login/code", LOGIN, phone=AGENT_PHONE)
    assert sent.status_code == 200
    code = await web_world.last_code(AGENT_PHONE)
    assert code not in sent.text
    wrong = await web_world.post_form(
        "/agent/login/verify", LOGIN, phone=AGENT_PHONE, code="000000" if code != "000000" else "1"
    )
    assert wrong.status_code == 400
    right = await web_world.post_form("/agent/login/verify", LOGIN, phone=AGENT_PHONE, code=code)
    assert right.status_code == 303
    assert (await web_world.http.get("/agent")).status_code == 200
    reused = await web_world.post_form("/agent/login/verify", LOGIN, phone=AGENT_PHONE, code=code)
    assert reused.status_code == 400  # used once
    entries = [(r.actor, r.action) for r in await audit.rows(web_world.web, 10)]
    assert (f"agent:{web_world.agent.agent_id}", "login_code") in entries


async def test_code_for_a_number_that_is_no_agent_says_the_same(web_world: WebWorld) -> None:
    response = await web_world.post_form("/agent/login/code", LOGIN, phone=MOBILE)
    assert response.status_code == 200
    assert web_world.web.catalogue.render("web_code_sent_if_bound") in response.text
    rows = await Outbox(web_world.ledger.engine, web_world.ledger.clock).rows(destination=MOBILE)
    assert not [r for r in rows if r.kind == "web_code"]


async def test_codes_are_rate_limited_per_phone(web_world: WebWorld) -> None:
    limit = web_world.web.settings.web_codes_per_hour
    for _ in range(limit):
        response = await web_world.post_form("/agent/login/code", LOGIN, phone=AGENT_PHONE)
        assert response.status_code == 200
    sent = await codes_sent(web_world, AGENT_PHONE)
    over = await web_world.post_form("/agent/login/code", LOGIN, phone=AGENT_PHONE)
    assert over.status_code == 200  # the same page as for a number that is no agent's
    assert web_world.web.catalogue.render("web_code_sent_if_bound") in over.text
    assert await codes_sent(web_world, AGENT_PHONE) == sent == limit
    web_world.ledger.clock.advance(3601)  # type: ignore[attr-defined]
    again = await web_world.post_form("/agent/login/code", LOGIN, phone=AGENT_PHONE)
    assert again.status_code == 200
    assert await codes_sent(web_world, AGENT_PHONE) == limit + 1


async def codes_sent(world: WebWorld, phone: str) -> int:
    rows = await Outbox(world.ledger.engine, world.ledger.clock).rows(destination=phone)
    return len([row for row in rows if row.kind == "web_code"])


async def test_a_code_takes_three_tries(web_world: WebWorld) -> None:
    await codes.send(web_world.web, AGENT_PHONE, "login")
    code = await web_world.last_code(AGENT_PHONE)
    wrong = "111111" if code != "111111" else "222222"
    for _ in range(3):
        assert not await codes.check(web_world.web, AGENT_PHONE, "login", wrong)
    assert not await codes.check(web_world.web, AGENT_PHONE, "login", code)


async def test_recharge_with_confirmation(web_world: WebWorld) -> None:
    await login_by_password(web_world)
    quote = await web_world.post_form(
        "/agent/recharge", "/agent/recharge", kind="mobile", number=MOBILE, amount="50", notify=""
    )
    assert quote.status_code == 200
    for figure in ("50.00元", "1.00元", "49.00元", MOBILE):  # amount, commission, debit
        assert figure in quote.text
    fields = dict(
        kind="mobile",
        number=MOBILE,
        amount_fen="5000",
        notify="",
        key="web-test-key",
        pin=TRADE_PIN,
    )
    done = await web_world.post_form("/agent/recharge/confirm", "/agent/recharge", **fields)
    assert done.status_code == 200 and "951.00元" in done.text
    assert TRADE_PIN not in done.text
    twice = await web_world.post_form("/agent/recharge/confirm", "/agent/recharge", **fields)
    assert twice.status_code == 200
    agent = await web_world.ledger.agent(web_world.agent.agent_id)
    assert agent.balance_fen == 100_000 - 4900  # a double submit is one recharge


async def test_recharge_refusals_on_the_page(web_world: WebWorld) -> None:
    await login_by_password(web_world)
    bad = await web_world.post_form(
        "/agent/recharge", "/agent/recharge", kind="mobile", number=MOBILE, amount="55"
    )
    assert bad.status_code == 422
    assert "10的整数倍" in bad.text
    wrong = await web_world.post_form(
        "/agent/recharge/confirm",
        "/agent/recharge",
        kind="mobile",
        number=MOBILE,
        amount_fen="5000",
        key="k1",
        pin="000000",
    )
    assert wrong.status_code == 422 and "交易密码错误" in wrong.text


async def test_records_paging_and_csv(web_world: WebWorld) -> None:
    for i in range(3):
        await web_world.ledger.deposit(web_world.agent.agent_id, 1000, f"d{i}")
    await login_by_password(web_world)
    page = await web_world.http.get("/agent/records")
    assert page.status_code == 200 and page.text.count("10.00元") == 3
    day = web_world.ledger.today().isoformat()
    export = await web_world.http.get(f"/agent/records.csv?from={day}&to={day}")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(export.text.lstrip("\ufeff"))))
    assert len(rows) == 1 + 4  # header, the opening deposit and three more
    assert rows[1][3] == "10.00"
    empty = await web_world.http.get("/agent/records.csv?from=2020-01-01&to=2020-01-02")
    assert len(export.text) > len(empty.text)


async def test_records_show_only_the_own_agent(web_world: WebWorld) -> None:
    await web_world.ledger.deposit(web_world.other.agent_id, 7000, "other")
    await login_by_password(web_world)
    page = await web_world.http.get("/agent/records")
    assert "70.00元" not in page.text


async def test_change_passwords(web_world: WebWorld) -> None:
    await login_by_password(web_world)
    page = "/agent/passwords"
    differ = await web_world.post_form(
        page, page, which="trade", old=TRADE_PIN, new="258025", again="258026"
    )
    assert differ.status_code == 400
    weak = await web_world.post_form(
        page, page, which="trade", old=TRADE_PIN, new="123456", again="123456"
    )
    assert weak.status_code == 422
    done = await web_world.post_form(
        page, page, which="trade", old=TRADE_PIN, new="258025", again="258025"
    )
    assert done.status_code == 200
    assert await web_world.ledger.balance(web_world.agent.agent_id, "258025") == 100_000
    mgmt = await web_world.post_form(
        page, page, which="mgmt", old=MGMT_PIN, new="369036", again="369036"
    )
    assert mgmt.status_code == 200
    assert await web_world.ledger.verify_mgmt_pin(web_world.agent.agent_id, "369036")


async def test_change_bound_phone_with_a_code_to_the_new_phone(web_world: WebWorld) -> None:
    new = "13800000009"
    await web_world.ledger.add_subscriber(new, Kind.MOBILE, Billing.PREPAID)
    await login_by_password(web_world)
    bound = await web_world.post_form("/agent/phone/code", "/agent/phone", phone=AGENT_PHONE)
    assert bound.status_code == 422  # bound already (to this very agent)
    fixed = await web_world.post_form("/agent/phone/code", "/agent/phone", phone="02787654321")
    assert fixed.status_code == 422
    sent = await web_world.post_form("/agent/phone/code", "/agent/phone", phone=new)
    assert sent.status_code == 200
    code = await web_world.last_code(new)
    done = await web_world.post_form("/agent/phone/confirm", "/agent/phone", phone=new, code=code)
    assert done.status_code == 200
    assert (await web_world.ledger.agent(web_world.agent.agent_id)).phone == new


async def test_online_deposit_without_the_500_floor(web_world: WebWorld) -> None:
    await login_by_password(web_world)
    low = await web_world.post_form("/agent/deposit", "/agent/deposit", amount="15")
    assert low.status_code == 422
    start = await web_world.post_form("/agent/deposit", "/agent/deposit", amount="20")
    assert start.status_code == 303
    pay_page = start.headers["location"]
    assert pay_page.startswith("/pay/sandbox/")
    waiting = await web_world.http.get(f"/agent/deposit?paid={pay_page.rsplit('/', 1)[1]}")
    assert "尚未确认" in waiting.text
    notification = sandbox_form((await web_world.http.get(pay_page)).text)
    paid = await web_world.http.post("/pay/sandbox/notify", data=notification)
    assert paid.status_code == 303
    back = await web_world.http.get(paid.headers["location"])
    assert back.status_code == 200 and "1020.00元" in back.text
    again = await web_world.http.post("/pay/sandbox/notify", data=notification)
    assert again.status_code == 303  # the provider notifies again: the first deposit
    assert (await web_world.ledger.agent(web_world.agent.agent_id)).balance_fen == 102_000
    entries = [(r.actor, r.action) for r in await audit.rows(web_world.web, 5)]
    assert ("provider:sandbox", "online_deposit") in entries


def sandbox_form(page: str) -> dict[str, str]:
    """The hidden fields of the sandbox's payment form: its notification."""
    return dict(re.findall(r'name="(payment_id|signature)" value="([^"]+)"', page))


async def test_a_forged_notification_deposits_nothing(web_world: WebWorld) -> None:
    await login_by_password(web_world)
    start = await web_world.post_form("/agent/deposit", "/agent/deposit", amount="20")
    notification = sandbox_form((await web_world.http.get(start.headers["location"])).text)
    forged = {**notification, "signature": "0" * 64}
    assert (await web_world.http.post("/pay/sandbox/notify", data=forged)).status_code == 400
    other = {**notification, "payment_id": str(int(notification["payment_id"]) + 1)}
    assert (await web_world.http.post("/pay/sandbox/notify", data=other)).status_code == 400
    elsewhere = await web_world.http.post("/pay/alipay/notify", data=notification)
    assert elsewhere.status_code == 404
    assert (await web_world.ledger.agent(web_world.agent.agent_id)).balance_fen == 100_000


async def test_another_agents_payment_is_not_found(web_world: WebWorld) -> None:
    await login_by_password(web_world)
    start = await web_world.post_form("/agent/deposit", "/agent/deposit", amount="20")
    pay_page = start.headers["location"]
    await web_world.http.post("/logout", data={"csrf": await web_world.csrf("/agent")})
    await login_by_password(web_world, agent_id=web_world.other.agent_id)
    assert (await web_world.http.get(pay_page)).status_code == 404


async def test_a_login_lasts_while_used(web_world: WebWorld) -> None:
    await login_by_password(web_world)
    ttl = web_world.web.settings.web_session_s
    clock = web_world.ledger.clock
    for _ in range(4):  # used every two thirds of its time: it lasts
        clock.advance(ttl * 2 // 3)  # type: ignore[attr-defined]
        assert (await web_world.http.get("/agent")).status_code == 200
    clock.advance(ttl + 1)  # type: ignore[attr-defined]
    assert (await web_world.http.get("/agent")).status_code == 303


async def test_logout_ends_the_session(web_world: WebWorld) -> None:
    await login_by_password(web_world)
    token = await web_world.csrf("/agent")
    out = await web_world.http.post("/logout", data={"csrf": token})
    assert out.status_code == 303
    assert (await web_world.http.get("/agent")).status_code == 303


async def test_a_closed_agent_is_logged_out(web_world: WebWorld) -> None:
    await login_by_password(web_world, agent_id=web_world.other.agent_id)
    await web_world.ledger.suspend_agent(web_world.other.agent_id)
    from sqlalchemy import text

    async with web_world.ledger.engine.begin() as conn:  # float below 10 yuan, as close needs
        await conn.execute(
            text("UPDATE agents SET status = 'closed' WHERE id = :id"),
            {"id": web_world.other.agent_id},
        )
    assert (await web_world.http.get("/agent")).status_code == 303

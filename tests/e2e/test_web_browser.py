"""The web pages in a real browser (headless Chromium, Playwright) against ``web_part``
served over HTTP, on a phone-sized screen: an agent logs in by a code sent by SMS, recharges,
sees the record, downloads the CSV and deposits online; an operator opens an agent and
reverses a recharge; a subscriber logs in by code, redeems a card for a data pack, sees the
allowance and closes the account with the code sent by SMS. Screenshots of the main pages are
saved (``browser.screenshot_dir``)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from smsmenu.ledger.api import Billing, Kind, RechargeRequest
from smsmenu.ledger.outbox import Outbox
from smsmenu.settings import Settings
from smsmenu.web import operators
from smsmenu.web.context import WebContext
from tests.e2e.browser import PHONE, install_chromium, screenshot_dir
from tests.ledger_fixtures import MGMT_PIN, TRADE_PIN, new_agent
from tests.web_server import ShiftedClock, WebThread

AGENT_PHONE = "13800000001"
MOBILE = "13900000002"
POSTPAID = "02787654321"
NEW_AGENT_PHONE = "13800000002"
OPERATOR_PASSWORD = "supervisor-pw-1"
CARDS = "number,pin,value,expires\n1000000001,123456,50,2027-01-31\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = install_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(path), args=["--no-sandbox"])
        yield browser
        browser.close()


async def _seed(web: WebThread) -> None:
    ledger = web.ledger
    await new_agent(ledger, AGENT_PHONE)
    await ledger.add_subscriber(MOBILE, Kind.MOBILE, Billing.PREPAID, 500)
    await ledger.add_subscriber(POSTPAID, Kind.FIXED, Billing.POSTPAID, 0)
    await ledger.add_subscriber(NEW_AGENT_PHONE, Kind.MOBILE, Billing.PREPAID)
    await operators.create(
        WebContext.of(ledger), "zhang", operators.Role.SUPERVISOR, OPERATOR_PASSWORD
    )
    await ledger.import_cards("B1", ledger.parse_cards(CARDS))


@pytest.fixture
def site(sqlite_url: str) -> Iterator[WebThread]:
    settings = Settings(database_url=sqlite_url, web_payment_provider="sandbox")
    # mid-month, so that the reversal's date rules allow it whatever day the tests run
    clock = ShiftedClock(datetime(2026, 11, 10, 2, 0, tzinfo=UTC))
    with WebThread(settings, clock) as web:
        web.run(_seed(web))
        yield web


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=PHONE, accept_downloads=True, locale="zh-CN")
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def shot(page: Page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def last_code(site: WebThread, phone: str, kind: str = "web_code") -> str:
    async def read() -> str:
        rows = await Outbox(site.ledger.engine, site.ledger.clock).rows(destination=phone)
        text = [row.text for row in rows if row.kind == kind][-1]
        found = re.search(r"[0-9]{6}", text)
        assert found
        return found.group(0)

    return site.run(read())


def test_agent_logs_in_by_code_recharges_and_downloads_the_records(
    site: WebThread, page: Page, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    page.goto(f"{site.url}/agent/login")
    expect(page.locator("h1")).to_have_text("代办户登录")
    shot(page, shots, "agent-login")
    page.fill("#login-code-request input[name=phone]", AGENT_PHONE)
    page.click("#login-code-request button")
    expect(page.locator(".notice")).to_be_visible()
    code = last_code(site, AGENT_PHONE)
    assert code not in page.content()
    page.fill("#login-code input[name=code]", code)
    page.click("#login-code button")
    expect(page.locator("#balance")).to_have_text("1000.00元")
    shot(page, shots, "agent-balance")

    page.click("nav a[href='/agent/recharge']")
    page.select_option("select[name=kind]", "mobile")
    page.fill("input[name=number]", MOBILE)
    page.fill("input[name=amount]", "50")
    page.click("#recharge button")
    quote = page.locator("#quote")
    for figure in (MOBILE, "50.00元", "1.00元", "49.00元"):
        expect(quote).to_contain_text(figure)
    shot(page, shots, "agent-confirm")
    page.fill("input[name=pin]", TRADE_PIN)
    page.click("#confirm button")
    expect(page.locator("h1")).to_have_text("充值成功")
    expect(page.locator("#result")).to_contain_text("951.00元")
    assert TRADE_PIN not in page.content()
    shot(page, shots, "agent-result")

    page.click("nav a[href='/agent/records']")
    expect(page.locator("#records")).to_contain_text(MOBILE)
    shot(page, shots, "agent-records")
    with page.expect_download() as download:
        page.click("#csv")
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert any(row[2] == MOBILE and row[3] == "50.00" for row in rows[1:]), rows

    # online deposit of 20 yuan (no 500 yuan floor) through the sandbox provider
    page.click("nav a[href='/agent/deposit']")
    page.fill("#deposit input[name=amount]", "20")
    page.click("#deposit button")
    expect(page.locator("h1")).to_have_text("支付（沙箱）")
    page.click("#sandbox-pay button")
    expect(page.locator("#deposited")).to_contain_text("971.00元")
    shot(page, shots, "agent-deposit")


def test_operator_opens_an_agent_and_reverses_a_recharge(
    site: WebThread, page: Page, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    page.goto(f"{site.url}/operator/login")
    page.fill("input[name=name]", "zhang")
    page.fill("input[name=password]", OPERATOR_PASSWORD)
    page.click("#operator-login button")
    expect(page.locator("nav .who")).to_contain_text("zhang")

    page.click("nav a[href='/operator/agents/open']")
    page.fill("input[name=phone]", NEW_AGENT_PHONE)
    page.fill("input[name=trade_pin]", "135790")
    page.fill("input[name=mgmt_pin]", MGMT_PIN)
    page.fill("input[name=deposit]", "600")
    shot(page, shots, "operator-open")
    page.click("#open-agent button")
    expect(page.locator("#agent-balance")).to_have_text("600.00元")
    agent_id = int(page.url.rsplit("/", 1)[1])

    # the new agent recharges a postpaid fixed line (by SMS, say)
    async def recharge() -> int:
        view = await site.ledger.recharge(
            RechargeRequest(agent_id, Kind.FIXED, POSTPAID, 10_000, "135790", "sms-1")
        )
        return view.tx_id

    tx_id = site.run(recharge())
    page.reload()
    expect(page.locator("#recharges")).to_contain_text(POSTPAID)
    expect(page.locator("#agent-balance")).to_have_text("502.00元")
    shot(page, shots, "operator-agent")
    page.click(f"#reverse-{tx_id}")
    expect(page.locator("#reversed")).to_contain_text(str(tx_id))
    page.goto(f"{site.url}/operator/agents/{agent_id}")
    expect(page.locator("#agent-balance")).to_have_text("600.00元")

    page.goto(f"{site.url}/operator/cards")
    expect(page.locator("#batch-B1")).to_contain_text("50.00元")
    shot(page, shots, "operator-cards")
    page.goto(f"{site.url}/operator/report")
    expect(page.locator("svg.chart")).to_be_visible()
    shot(page, shots, "operator-report")
    page.goto(f"{site.url}/operator/audit")
    expect(page.locator("#audit")).to_contain_text("reversal")
    expect(page.locator("#audit")).to_contain_text("open_agent")
    shot(page, shots, "operator-audit")


def test_subscriber_redeems_a_card_for_data_and_closes_the_account(
    site: WebThread, page: Page, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    page.goto(f"{site.url}/subscriber/login")
    expect(page.locator("h1")).to_have_text("手机用户登录")
    page.fill("#login-code-request input[name=phone]", MOBILE)
    page.click("#login-code-request button")
    expect(page.locator(".notice")).to_be_visible()
    shot(page, shots, "subscriber-login")
    page.fill("#login-code input[name=code]", last_code(site, MOBILE))
    page.click("#login-code button")
    expect(page.locator("#balance")).to_have_text("5.00元")

    page.click("nav a[href='/subscriber/card']")
    page.fill("#card input[name=card]", "1000000001")
    page.check("#card input[value=D100]")
    shot(page, shots, "subscriber-card")
    page.click("#card button")
    expect(page.locator("#card-quote")).to_contain_text("100M流量包")
    page.fill("#card-confirm input[name=pin]", "123456")
    page.click("#card-confirm button")
    result = page.locator("#card-result")
    for figure in ("50.00元", "100M流量包", "40.00元", "45.00元"):
        expect(result).to_contain_text(figure)
    assert "123456" not in page.content()
    shot(page, shots, "subscriber-card-result")

    page.click("nav a[href='/subscriber']")
    expect(page.locator("#allowances")).to_contain_text("100M流量包")
    expect(page.locator("#balance")).to_have_text("45.00元")
    shot(page, shots, "subscriber-home")

    page.click("nav a[href='/subscriber/close']")
    expect(page.locator("#closing-balance")).to_have_text("45.00元")
    page.click("#close-code button")
    code = last_code(site, MOBILE, "closing_code")
    shot(page, shots, "subscriber-close")
    page.fill("#close-confirm input[name=code]", code)
    page.click("#close-confirm button")
    expect(page.locator("#closed")).to_contain_text("45.00元")
    assert code not in page.content()
    shot(page, shots, "subscriber-closed")
    page.goto(f"{site.url}/subscriber")
    expect(page.locator("h1")).to_have_text("手机用户登录")  # logged out: closed for good

"""The operator's pages over HTTP on SQLite and PostgreSQL: login and its lock-out, open an
agent, deposit, suspend/resume, close, reversal (supervisors only; each refusal names its
rule), subscribers, the daily report and the audit log."""

from __future__ import annotations

import httpx

from smsmenu.ledger.api import Billing, Kind, RechargeRequest
from smsmenu.web.operators import Role
from tests.ledger_fixtures import TRADE_PIN
from tests.web_fixtures import OPERATOR_PASSWORD, POSTPAID_MOBILE, WebWorld, new_operator

LOGIN = "/operator/login"


async def login(world: WebWorld, name: str, role: Role = Role.STAFF) -> httpx.Response:
    await new_operator(world, name, role)
    return await world.post_form(LOGIN, LOGIN, name=name, password=OPERATOR_PASSWORD)


async def recharge_postpaid(world: WebWorld) -> int:
    view = await world.ledger.recharge(
        RechargeRequest(world.agent.agent_id, Kind.MOBILE, POSTPAID_MOBILE, 5000, TRADE_PIN, "r1")
    )
    return view.tx_id


async def test_pages_need_an_operator(web_world: WebWorld) -> None:
    for path in ("/operator", "/operator/report", "/operator/audit", "/operator/agents/1"):
        assert (await web_world.http.get(path)).status_code == 303
    # an agent's login is no operator's
    await web_world.post_form(
        "/agent/login", "/agent/login", agent_id=str(web_world.agent.agent_id), password="246801"
    )
    assert (await web_world.http.get("/operator")).status_code == 303


async def test_login_and_lockout(web_world: WebWorld) -> None:
    await new_operator(web_world, "wang", Role.STAFF)
    for _ in range(3):
        wrong = await web_world.post_form(LOGIN, LOGIN, name="wang", password="not-the-one!")
        assert wrong.status_code == 400
    locked = await web_world.post_form(LOGIN, LOGIN, name="wang", password=OPERATOR_PASSWORD)
    assert locked.status_code == 400
    assert web_world.web.catalogue.render("web_refusal_operator_locked") in locked.text
    web_world.ledger.clock.advance(31 * 60)  # type: ignore[attr-defined]
    ok = await web_world.post_form(LOGIN, LOGIN, name="wang", password=OPERATOR_PASSWORD)
    assert ok.status_code == 303
    assert OPERATOR_PASSWORD not in (await web_world.http.get("/operator")).text


async def test_open_agent_deposit_suspend_resume_close(web_world: WebWorld) -> None:
    await login(web_world, "li")
    await web_world.ledger.add_subscriber("13800000077", Kind.MOBILE, Billing.PREPAID)
    phone = "13800000077"
    page = "/operator/agents/open"
    small = await web_world.post_form(
        page, page, phone=phone, trade_pin="135790", mgmt_pin="246801", deposit="100", key="o1"
    )
    assert small.status_code == 422 and "500" in small.text
    opened = await web_world.post_form(
        page, page, phone=phone, trade_pin="135790", mgmt_pin="246801", deposit="500", key="o2"
    )
    assert opened.status_code == 303
    agent_page = opened.headers["location"]
    agent_id = int(agent_page.rsplit("/", 1)[1])
    shown = await web_world.http.get(agent_page)
    assert "500.00元" in shown.text and "135790" not in shown.text
    deposited = await web_world.post_form(f"{agent_page}/deposit", agent_page, amount="30", key="d")
    assert deposited.status_code == 200 and "530.00元" in deposited.text
    suspended = await web_world.post_form(f"{agent_page}/suspend", agent_page)
    assert (await web_world.ledger.agent(agent_id)).status.value == "suspended"
    assert suspended.status_code == 200
    await web_world.post_form(f"{agent_page}/resume", agent_page)
    assert (await web_world.ledger.agent(agent_id)).status.value == "active"
    refused = await web_world.post_form(f"{agent_page}/close", agent_page, key="c1")
    assert refused.status_code == 422  # float above 10 yuan
    unknown = await web_world.post_form(f"{agent_page}/explode", agent_page)
    assert unknown.status_code == 404
    taken = await web_world.post_form(f"{agent_page}/phone", agent_page, phone="13800000001")
    assert taken.status_code == 422  # another agent's bound phone
    await web_world.ledger.add_subscriber("13800000078", Kind.MOBILE, Billing.PREPAID)
    moved = await web_world.post_form(f"{agent_page}/phone", agent_page, phone="13800000078")
    assert moved.status_code == 200
    assert (await web_world.ledger.agent(agent_id)).phone == "13800000078"
    await web_world.ledger.recharge(  # 540.00 less 2% is 529.20 of the float's 530.00
        RechargeRequest(agent_id, Kind.MOBILE, POSTPAID_MOBILE, 54000, "135790", "big")
    )
    closed = await web_world.post_form(f"{agent_page}/close", agent_page, key="c2")
    assert closed.status_code == 200 and "0.80元" in closed.text


async def test_invoice_printed_blocks_the_reversal(web_world: WebWorld) -> None:
    tx = await recharge_postpaid(web_world)
    await login(web_world, "boss", Role.SUPERVISOR)
    marked = await web_world.post_form("/operator/invoice", "/operator", tx_id=str(tx))
    assert marked.status_code == 200
    refused = await web_world.post_form("/operator/reversal", "/operator", tx_id=str(tx), key="r")
    assert refused.status_code == 422 and "reversal_invoice_printed" in refused.text
    unknown = await web_world.post_form("/operator/invoice", "/operator", tx_id="99999999999")
    assert unknown.status_code == 422 and "recharge_unknown" in unknown.text


async def test_reversal_by_supervisor_only(web_world: WebWorld) -> None:
    tx = await recharge_postpaid(web_world)
    await login(web_world, "staffer", Role.STAFF)
    staff = await web_world.post_form("/operator/reversal", "/operator", tx_id=str(tx), key="r")
    assert staff.status_code == 403 and "supervisor_only" in staff.text
    assert (await web_world.ledger.recharge_view(tx)).status.value == "succeeded"
    await web_world.http.post("/logout", data={"csrf": await web_world.csrf("/operator")})
    await login(web_world, "boss", Role.SUPERVISOR)
    done = await web_world.post_form("/operator/reversal", "/operator", tx_id=str(tx), key="r2")
    assert done.status_code == 200, done.text
    assert (await web_world.ledger.recharge_view(tx)).status.value == "reversed"
    second = await recharge_postpaid_again(web_world)
    limit = await web_world.post_form("/operator/reversal", "/operator", tx_id=str(second), key="x")
    assert limit.status_code == 422 and "reversal_monthly_limit" in limit.text
    audit = await web_world.http.get("/operator/audit")
    for entry in (
        "login_password",
        "operator:staffer",
        "refused:supervisor_only",
        "operator:boss",
        "refused:reversal_monthly_limit",
    ):
        assert entry in audit.text


async def recharge_postpaid_again(world: WebWorld) -> int:
    view = await world.ledger.recharge(
        RechargeRequest(world.agent.agent_id, Kind.MOBILE, POSTPAID_MOBILE, 1000, TRADE_PIN, "r9")
    )
    return view.tx_id


async def test_subscribers_add_and_show(web_world: WebWorld) -> None:
    await login(web_world, "zhao")
    page = "/operator/subscribers"
    added = await web_world.post_form(
        page, page, number="02787650001", kind="phs", billing="postpaid", balance="-12.50"
    )
    assert added.status_code == 200 and "-12.50元" in added.text
    twice = await web_world.post_form(
        page, page, number="02787650001", kind="phs", billing="postpaid", balance="0"
    )
    assert twice.status_code == 422
    shown = await web_world.http.get(f"{page}?number=02787650001")
    assert "-12.50元" in shown.text
    bad = await web_world.post_form(page, page, number="1", kind="x", billing="y")
    assert bad.status_code == 400


async def test_daily_report_and_chart(web_world: WebWorld) -> None:
    await recharge_postpaid(web_world)
    await login(web_world, "qian")
    day = web_world.ledger.today().isoformat()
    report = await web_world.http.get(f"/operator/report?from={day}&to={day}")
    assert report.status_code == 200
    assert "<svg" in report.text and "50.00元" in report.text and "1.00元" in report.text
    junk = await web_world.http.get("/operator/report?from=nope&to=2026-13-40")
    assert junk.status_code == 200


async def test_find_agent_and_missing_agent(web_world: WebWorld) -> None:
    await login(web_world, "sun")
    listed = await web_world.http.get("/operator/agents")
    assert listed.status_code == 200
    assert web_world.agent.phone in listed.text and web_world.other.phone in listed.text
    assert (await web_world.http.get("/operator/agents?page=99")).status_code == 200
    found = await web_world.http.get(f"/operator/find?agent_id={web_world.agent.agent_id}")
    assert found.status_code == 303
    missing = await web_world.http.get("/operator/agents/999")
    assert missing.status_code == 404

"""Races through the web layer on SQLite and PostgreSQL: one Idempotency-Key sent many times
at once moves money once; a phone's code limit holds against requests at once; operators'
wrong passwords at once are counted to the lock and no further; a subscriber's card form sent
many times at once redeems once, and card PIN guesses at once stop at the shared lock."""

from __future__ import annotations

import asyncio

import pytest

from smsmenu.ledger.api import Refusal, Rule
from smsmenu.ledger.models import login_codes
from smsmenu.web import codes, operators
from smsmenu.web.operators import Role
from smsmenu.web.refusals import WebRefusal
from tests.ledger_fixtures import TRADE_PIN
from tests.web_fixtures import AGENT_PHONE, MOBILE, OPERATOR_PASSWORD, WebWorld, api_key

CARDS = "number,pin,value,expires\n1000000001,123456,50,2027-01-31\n"


async def test_one_key_at_once_is_one_recharge(web_world: WebWorld) -> None:
    headers = {**await api_key(web_world, "operator"), "idempotency-key": "same"}
    body = {
        "agent_id": web_world.agent.agent_id,
        "kind": "mobile",
        "number": MOBILE,
        "amount_fen": 5000,
        "pin": TRADE_PIN,
    }
    responses = await asyncio.gather(
        *(web_world.http.post("/api/v1/recharges", json=body, headers=headers) for _ in range(8))
    )
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["tx_id"] for r in responses}) == 1
    agent = await web_world.ledger.agent(web_world.agent.agent_id)
    assert agent.balance_fen == 100_000 - 4900


async def test_code_limit_holds_at_once(web_world: WebWorld) -> None:
    limit = web_world.web.settings.web_codes_per_hour
    results = await asyncio.gather(
        *(codes.send(web_world.web, AGENT_PHONE, "login") for _ in range(limit + 4)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, WebRefusal)]
    assert len(refused) == 4 and all(r.rule.value == "code_rate_limited" for r in refused)
    async with web_world.ledger.engine.connect() as conn:
        rows = (await conn.execute(login_codes.select())).all()
    assert len(rows) == limit


async def test_operator_guesses_at_once_stop_at_the_lock(web_world: WebWorld) -> None:
    await operators.create(web_world.web, "chen", Role.STAFF, OPERATOR_PASSWORD)
    results = await asyncio.gather(
        *(operators.login(web_world.web, "chen", f"guess-number-{i}") for i in range(8)),
        return_exceptions=True,
    )
    rules = sorted(r.rule.value for r in results if isinstance(r, WebRefusal))
    assert len(rules) == 8
    assert rules.count("login_failed") <= 2  # at most three guesses are checked
    right = await asyncio.gather(
        operators.login(web_world.web, "chen", OPERATOR_PASSWORD), return_exceptions=True
    )
    assert isinstance(right[0], WebRefusal) and right[0].rule.value == "operator_locked"


async def _subscriber_login(world: WebWorld) -> str:
    """Log ``MOBILE`` in to the subscriber pages; a CSRF token of its forms."""
    await world.post_form("/subscriber/login/code", "/subscriber/login", phone=MOBILE)
    code = await world.last_code(MOBILE)
    await world.post_form("/subscriber/login/verify", "/subscriber/login", phone=MOBILE, code=code)
    return await world.csrf("/subscriber/card")


async def test_one_card_form_at_once_is_one_redemption(web_world: WebWorld) -> None:
    ledger = web_world.ledger
    await ledger.import_cards("B1", ledger.parse_cards(CARDS))
    token = await _subscriber_login(web_world)
    form = {"csrf": token, "card": "1000000001", "use": "credit", "pin": "123456", "key": "k"}
    responses = await asyncio.gather(
        *(web_world.http.post("/subscriber/card/confirm", data=form) for _ in range(8))
    )
    assert {r.status_code for r in responses} == {200}, [r.text[-300:] for r in responses]
    view = await ledger.subscriber(MOBILE)
    assert view is not None and view.balance_fen == 500 + 5000


async def test_card_pin_guesses_at_once_stop_at_the_lock(web_world: WebWorld) -> None:
    ledger = web_world.ledger
    await ledger.import_cards("B1", ledger.parse_cards(CARDS))
    token = await _subscriber_login(web_world)
    guesses = [
        {"csrf": token, "card": "1000000001", "use": "credit", "pin": f"{i:06d}", "key": f"g{i}"}
        for i in range(8)
    ]
    responses = await asyncio.gather(
        *(web_world.http.post("/subscriber/card/confirm", data=form) for form in guesses)
    )
    assert {r.status_code for r in responses} == {422}
    wrong = ledger.explain(Refusal(Rule.CARD_INVALID))
    assert sum(wrong in r.text for r in responses) <= 3  # at most three PINs compared
    with pytest.raises(Refusal) as locked:  # by SMS now: the lock is the same
        await ledger.redeem_card(MOBILE, "1000000001", "123456", None, "sms")
    assert locked.value.rule is Rule.CARD_LOCKED

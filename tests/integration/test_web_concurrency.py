"""Races through the web layer on SQLite and PostgreSQL: one Idempotency-Key sent many times
at once moves money once; a phone's code limit holds against requests at once; operators'
wrong passwords at once are counted to the lock and no further."""

from __future__ import annotations

import asyncio

from smsmenu.ledger.models import login_codes
from smsmenu.web import codes, operators
from smsmenu.web.operators import Role
from smsmenu.web.refusals import WebRefusal
from tests.ledger_fixtures import TRADE_PIN
from tests.web_fixtures import AGENT_PHONE, MOBILE, OPERATOR_PASSWORD, WebWorld, api_key


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

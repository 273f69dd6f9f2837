"""The HTTP API of SPEC §9 through httpx against the ASGI app, on SQLite and PostgreSQL: the
calls and their JSON, idempotency keys, scopes, and every refusal as a 4xx naming its rule."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from smsmenu.ledger.api import Billing, Kind
from smsmenu.web import apikeys, audit
from tests.ledger_fixtures import TRADE_PIN
from tests.web_fixtures import FIXED, MOBILE, POSTPAID_MOBILE, WebWorld, api_key

RECHARGE_FIELDS = {
    "tx_id",
    "number",
    "kind",
    "amount_fen",
    "commission_fen",
    "debit_fen",
    "status",
    "created_at",
}


def body(world: WebWorld, **changes: Any) -> dict[str, Any]:
    return {
        "agent_id": world.agent.agent_id,
        "kind": "mobile",
        "number": MOBILE,
        "amount_fen": 5000,
        "pin": TRADE_PIN,
        **changes,
    }


def rule_of(response: Any) -> str:
    error = response.json()["error"]
    assert set(error) == {"rule", "message"} and error["message"]
    return str(error["rule"])


async def test_agent_show_object(web_world: WebWorld) -> None:
    headers = await api_key(web_world, "operator")
    response = await web_world.http.get(
        f"/api/v1/agents/{web_world.agent.agent_id}", headers=headers
    )
    assert response.status_code == 200
    assert response.json() == {
        "agent_id": web_world.agent.agent_id,
        "phone": web_world.agent.phone,
        "status": "active",
        "balance_fen": 100_000,
        "commission_bp": 200,
    }


async def test_no_or_bad_or_revoked_key_is_unauthorized(web_world: WebWorld) -> None:
    path = f"/api/v1/agents/{web_world.agent.agent_id}"
    assert rule_of(await web_world.http.get(path)) == "unauthorized"
    bad = {"authorization": "Bearer smk_nothing"}
    response = await web_world.http.get(path, headers=bad)
    assert response.status_code == 401 and rule_of(response) == "unauthorized"
    headers = await api_key(web_world, "operator", "ops")
    assert (await web_world.http.get(path, headers=headers)).status_code == 200
    assert await apikeys.revoke(web_world.web, "ops")
    response = await web_world.http.get(path, headers=headers)
    assert response.status_code == 401


async def test_keys_are_stored_hashed(web_world: WebWorld) -> None:
    key = await apikeys.create(web_world.web, "client", "operator")
    async with web_world.ledger.engine.connect() as conn:
        from sqlalchemy import text

        stored = (await conn.execute(text("SELECT key_hash FROM api_keys"))).scalar_one()
    assert key not in stored and key.removeprefix("smk_") not in stored


async def test_recharge_created_and_idempotent(
    web_world: WebWorld, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {**await api_key(web_world, "operator"), "idempotency-key": "order-1"}
    caplog.set_level(logging.INFO, "smsmenu.money")
    first = await web_world.http.post("/api/v1/recharges", json=body(web_world), headers=headers)
    assert first.status_code == 201, first.text
    made = first.json()
    assert set(made) == RECHARGE_FIELDS
    assert made["status"] == "succeeded" and made["commission_fen"] == 100
    assert made["debit_fen"] == 4900 and made["created_at"].endswith("+08:00")
    again = await web_world.http.post("/api/v1/recharges", json=body(web_world), headers=headers)
    assert again.status_code == 201 and again.json() == made
    agent = await web_world.ledger.agent(web_world.agent.agent_id)
    assert agent.balance_fen == 100_000 - 4900  # moved once
    lines = [r.getMessage() for r in caplog.records if r.name == "smsmenu.money"]
    assert any("op=recharge" in line and f"tx={made['tx_id']}" in line for line in lines)
    assert not any(TRADE_PIN in line for line in lines)
    other = {**headers, "idempotency-key": "order-1"}
    changed = await web_world.http.post(
        "/api/v1/recharges", json=body(web_world, amount_fen=6000), headers=other
    )
    assert changed.status_code == 409 and rule_of(changed) == "key_reused"


async def test_recharge_needs_an_idempotency_key(web_world: WebWorld) -> None:
    headers = await api_key(web_world, "operator")
    response = await web_world.http.post("/api/v1/recharges", json=body(web_world), headers=headers)
    assert response.status_code == 400 and rule_of(response) == "idempotency_key_missing"


@pytest.mark.parametrize(
    ("changes", "status", "rule"),
    [
        ({"amount_fen": 5500}, 422, "bad_amount"),
        ({"number": "123"}, 422, "bad_number"),
        ({"pin": "000000"}, 422, "wrong_pin"),
        ({"pin": "12"}, 422, "bad_pin_format"),
        ({"number": "13911111111"}, 422, "target_unknown"),
        ({"kind": "fixed", "number": MOBILE}, 422, "bad_number"),
        ({"kind": "mobile", "number": "13900000009"}, 422, "target_unknown"),
        ({"amount_fen": 100_000, "agent_id": 999}, 404, "agent_unknown"),
        ({"kind": "satellite"}, 400, "bad_request"),
        ({"amount_fen": "50"}, 400, "bad_request"),
        ({"agent_id": True}, 400, "bad_request"),
        ({"extra": 1}, 400, "bad_request"),
        ({"number": "1\x00"}, 400, "bad_request"),
    ],
)
async def test_recharge_refusals(
    web_world: WebWorld, changes: dict[str, Any], status: int, rule: str
) -> None:
    headers = {**await api_key(web_world, "operator"), "idempotency-key": "k"}
    response = await web_world.http.post(
        "/api/v1/recharges", json=body(web_world, **changes), headers=headers
    )
    assert response.status_code == status, response.text
    assert rule_of(response) == rule
    agent = await web_world.ledger.agent(web_world.agent.agent_id)
    assert agent.balance_fen == 100_000


async def test_insufficient_funds_is_named(web_world: WebWorld) -> None:
    headers = await api_key(web_world, "operator")
    for i in range(2):
        response = await web_world.http.post(
            "/api/v1/recharges",
            json=body(web_world, amount_fen=100_000, kind="fixed", number=FIXED),
            headers={**headers, "idempotency-key": f"big-{i}"},
        )
    assert response.status_code == 422 and rule_of(response) == "insufficient_funds"


async def test_malformed_json_is_bad_request(web_world: WebWorld) -> None:
    headers = {**await api_key(web_world, "operator"), "idempotency-key": "k"}
    response = await web_world.http.post("/api/v1/recharges", content=b"{nope", headers=headers)
    assert response.status_code == 400 and rule_of(response) == "bad_request"


async def test_wrong_pins_lock_across_channels(web_world: WebWorld) -> None:
    """Three wrong trade passwords through the API lock the agent's trade operations for SMS
    too (one count, SPEC §10)."""
    headers = await api_key(web_world, "operator")
    rules = []
    for i in range(4):
        response = await web_world.http.post(
            "/api/v1/recharges",
            json=body(web_world, pin="000000"),
            headers={**headers, "idempotency-key": f"w{i}"},
        )
        rules.append(rule_of(response))
    assert rules == ["wrong_pin", "wrong_pin", "pin_locked", "pin_locked"]
    from smsmenu.ledger.api import Refusal

    with pytest.raises(Refusal) as refused:
        await web_world.ledger.balance(web_world.agent.agent_id, TRADE_PIN)
    assert refused.value.rule.value == "pin_locked"


async def test_agent_key_sees_only_its_agent(web_world: WebWorld) -> None:
    own, other = web_world.agent.agent_id, web_world.other.agent_id
    headers = await api_key(web_world, f"agent:{own}")
    assert (await web_world.http.get(f"/api/v1/agents/{own}", headers=headers)).status_code == 200
    response = await web_world.http.get(f"/api/v1/agents/{other}", headers=headers)
    assert response.status_code == 403 and rule_of(response) == "forbidden"
    response = await web_world.http.get(f"/api/v1/recharges?agent_id={other}", headers=headers)
    assert response.status_code == 403
    response = await web_world.http.post(
        "/api/v1/recharges",
        json=body(web_world, agent_id=other),
        headers={**headers, "idempotency-key": "x"},
    )
    assert response.status_code == 403
    response = await web_world.http.post("/api/v1/recharges/1/reversal", headers=headers)
    assert response.status_code == 403 and rule_of(response) == "forbidden"
    made = await web_world.http.post(
        "/api/v1/recharges", json=body(web_world), headers={**headers, "idempotency-key": "own"}
    )
    assert made.status_code == 201


async def test_list_recharges_and_date_range(web_world: WebWorld) -> None:
    headers = await api_key(web_world, "operator")
    made = await web_world.http.post(
        "/api/v1/recharges", json=body(web_world), headers={**headers, "idempotency-key": "a"}
    )
    agent_id = web_world.agent.agent_id
    listed = await web_world.http.get(f"/api/v1/recharges?agent_id={agent_id}", headers=headers)
    assert listed.status_code == 200 and listed.json() == [made.json()]
    today = web_world.ledger.today().isoformat()
    ranged = await web_world.http.get(
        f"/api/v1/recharges?agent_id={agent_id}&from={today}&to={today}", headers=headers
    )
    assert ranged.json() == [made.json()]
    before = await web_world.http.get(
        f"/api/v1/recharges?agent_id={agent_id}&from=2020-01-01&to=2020-01-31", headers=headers
    )
    assert before.json() == []
    for query in ("", "agent_id=x", f"agent_id={agent_id}&from=nope", "agent_id=99999999999"):
        response = await web_world.http.get(f"/api/v1/recharges?{query}", headers=headers)
        assert response.status_code == 400 and rule_of(response) == "bad_request"
    missing = await web_world.http.get("/api/v1/recharges?agent_id=999", headers=headers)
    assert missing.status_code == 404 and rule_of(missing) == "agent_unknown"


async def test_reversal_and_its_rules(web_world: WebWorld) -> None:
    headers = await api_key(web_world, "operator")
    prepaid = await web_world.http.post(
        "/api/v1/recharges", json=body(web_world), headers={**headers, "idempotency-key": "p"}
    )
    tx = prepaid.json()["tx_id"]
    refused = await web_world.http.post(f"/api/v1/recharges/{tx}/reversal", headers=headers)
    assert refused.status_code == 422 and rule_of(refused) == "reversal_not_postpaid"
    postpaid = await web_world.http.post(
        "/api/v1/recharges",
        json=body(web_world, number=POSTPAID_MOBILE),
        headers={**headers, "idempotency-key": "q"},
    )
    tx = postpaid.json()["tx_id"]
    done = await web_world.http.post(f"/api/v1/recharges/{tx}/reversal", headers=headers)
    assert done.status_code == 201, done.text
    reversal = done.json()
    assert reversal["recharge_tx_id"] == tx and reversal["debit_fen"] == 4900
    again = await web_world.http.post(f"/api/v1/recharges/{tx}/reversal", headers=headers)
    assert again.status_code == 201 and again.json() == reversal  # the same, not twice
    assert (await web_world.ledger.agent(web_world.agent.agent_id)).balance_fen == 100_000 - 4900
    unknown = await web_world.http.post("/api/v1/recharges/99999/reversal", headers=headers)
    assert unknown.status_code == 404 and rule_of(unknown) == "recharge_unknown"
    huge = await web_world.http.post(f"/api/v1/recharges/{2**70}/reversal", headers=headers)
    assert huge.status_code == 404
    logged = [(r.actor, r.action, r.outcome) for r in await audit.rows(web_world.web, 20)]
    assert ("apikey:operator", "reversal", "refused:reversal_not_postpaid") in logged
    assert ("apikey:operator", "reversal", "ok") in logged
    assert ("apikey:operator", "recharge", "ok") in logged


async def test_openapi_document(web_world: WebWorld) -> None:
    response = await web_world.http.get("/api/v1/openapi.json")
    document = response.json()
    assert response.status_code == 200 and document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/api/v1/agents",
        "/api/v1/agents/{agent_id}",
        "/api/v1/agents/{agent_id}/status",
        "/api/v1/agents/{agent_id}/deposits",
        "/api/v1/subscribers/{number}",
        "/api/v1/recharges",
        "/api/v1/recharges/{tx_id}/reversal",
    }
    json.dumps(document)


async def test_unknown_paths_and_methods_are_json_errors(web_world: WebWorld) -> None:
    response = await web_world.http.get("/api/v1/nothing")
    assert response.status_code == 404 and rule_of(response) == "not_found"
    response = await web_world.http.delete("/api/v1/recharges")
    assert response.status_code == 405 and rule_of(response) == "method_not_allowed"


async def test_security_headers(web_world: WebWorld) -> None:
    response = await web_world.http.get("/api/v1/openapi.json")
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_operator_deposits_once_per_idempotency_key(web_world: WebWorld) -> None:
    headers = await api_key(web_world, "operator")
    agent = web_world.agent.agent_id
    path = f"/api/v1/agents/{agent}/deposits"
    missing = await web_world.http.post(path, json={"amount_fen": 2000}, headers=headers)
    assert missing.status_code == 400 and rule_of(missing) == "idempotency_key_missing"
    keyed = {**headers, "idempotency-key": "dep-1"}
    first = await web_world.http.post(path, json={"amount_fen": 2000}, headers=keyed)
    again = await web_world.http.post(path, json={"amount_fen": 2000}, headers=keyed)
    assert first.status_code == again.status_code == 201
    assert first.json()["balance_fen"] == again.json()["balance_fen"] == 102_000  # once
    bad = await web_world.http.post(
        path, json={"amount_fen": 1500}, headers={**headers, "idempotency-key": "dep-2"}
    )
    assert bad.status_code == 422 and rule_of(bad) == "bad_deposit"
    unknown = await web_world.http.post(
        "/api/v1/agents/999999/deposits",
        json={"amount_fen": 2000},
        headers={**headers, "idempotency-key": "dep-3"},
    )
    assert unknown.status_code == 404 and rule_of(unknown) == "agent_unknown"
    assert (await web_world.ledger.agent(agent)).balance_fen == 102_000


async def test_operator_reads_a_subscriber_an_agent_key_cannot(web_world: WebWorld) -> None:
    operator = await api_key(web_world, "operator")
    shown = await web_world.http.get(f"/api/v1/subscribers/{MOBILE}", headers=operator)
    assert shown.status_code == 200
    assert shown.json()["number"] == MOBILE and "allowances" in shown.json()
    unknown = await web_world.http.get("/api/v1/subscribers/13999999999", headers=operator)
    assert unknown.status_code == 404 and rule_of(unknown) == "not_found"
    agent_key = await api_key(web_world, f"agent:{web_world.agent.agent_id}", "shop")
    for response in (
        await web_world.http.get(f"/api/v1/subscribers/{MOBILE}", headers=agent_key),
        await web_world.http.post(
            f"/api/v1/agents/{web_world.agent.agent_id}/deposits",
            json={"amount_fen": 2000},
            headers={**agent_key, "idempotency-key": "dep-4"},
        ),
    ):
        assert response.status_code == 403 and rule_of(response) == "forbidden"


async def test_operator_opens_suspends_and_resumes_an_agent(web_world: WebWorld) -> None:
    headers = await api_key(web_world, "operator")
    phone = "13800000077"
    await web_world.ledger.add_subscriber(phone, Kind.MOBILE, Billing.PREPAID)
    fields = {"phone": phone, "trade_pin": "135790", "mgmt_pin": "246801", "deposit_fen": 50_000}
    keyed = {**headers, "idempotency-key": "open-77"}
    opened = await web_world.http.post("/api/v1/agents", json=fields, headers=keyed)
    again = await web_world.http.post("/api/v1/agents", json=fields, headers=keyed)
    assert opened.status_code == again.status_code == 201 and opened.json() == again.json()
    agent = opened.json()["agent_id"]
    assert opened.json()["phone"] == phone and opened.json()["balance_fen"] == 50_000
    low = await web_world.http.post(
        "/api/v1/agents",
        json={**fields, "deposit_fen": 40_000},
        headers={**headers, "idempotency-key": "open-78"},
    )
    assert low.status_code == 422 and rule_of(low) == "opening_deposit_too_small"
    path = f"/api/v1/agents/{agent}/status"
    suspended = await web_world.http.post(path, json={"status": "suspended"}, headers=headers)
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    bad = await web_world.http.post(path, json={"status": "gone"}, headers=headers)
    assert bad.status_code == 400 and rule_of(bad) == "bad_request"
    resumed = await web_world.http.post(path, json={"status": "active"}, headers=headers)
    assert resumed.json()["status"] == "active"
    shop = await api_key(web_world, f"agent:{agent}", "shop-77")
    forbidden = await web_world.http.post(path, json={"status": "suspended"}, headers=shop)
    assert forbidden.status_code == 403

"""Every form of the pages posted with arbitrary text (digits of any script, huge numbers,
control characters), logged in and with a valid CSRF token, on SQLite and PostgreSQL: a page
answers 2xx, 3xx or 4xx, never 5xx, and the books stay balanced (the ledger fixture checks)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsmenu.web.operators import Role
from tests.ledger_fixtures import MGMT_PIN
from tests.web_fixtures import MOBILE, OPERATOR_PASSWORD, WebWorld, new_operator

TEXT = st.one_of(
    st.text(max_size=24),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["", "0", "50", "13900000002", "02787654321", "135790", "\x00", "1e9"]),
)

AGENT_FORMS = [
    ("/agent/recharge", ("kind", "number", "amount", "notify")),
    ("/agent/recharge/confirm", ("kind", "number", "amount_fen", "notify", "key", "pin")),
    ("/agent/retry", ("tx_id", "pin", "key")),
    ("/agent/passwords", ("which", "old", "new", "again")),
    ("/agent/phone/code", ("phone",)),
    ("/agent/phone/confirm", ("phone", "code")),
    ("/agent/deposit", ("amount",)),
]
OPERATOR_FORMS = [
    ("/operator/agents/open", ("phone", "trade_pin", "mgmt_pin", "deposit", "commission_bp")),
    ("/operator/agents/1/deposit", ("amount", "key")),
    ("/operator/agents/1/phone", ("phone",)),
    ("/operator/reversal", ("tx_id", "key")),
    ("/operator/invoice", ("tx_id",)),
    ("/operator/subscribers", ("number", "kind", "billing", "balance")),
    ("/operator/subscribers/close", ("number", "key")),
    ("/operator/cards/void", ("batch",)),
    ("/operator/cards/import", ("batch", "file")),
]
SUBSCRIBER_FORMS = [
    ("/subscriber/close/code", ()),
    ("/subscriber/card", ("card", "use")),
    ("/subscriber/card/confirm", ("card", "use", "pin", "key")),
    ("/subscriber/close/confirm", ("code", "key")),
]
OPERATOR_QUERIES = [
    "/operator/subscribers?number=",
    "/operator/report?from=",
    "/operator/audit?page=",
    "/operator/agents?page=",
    "/operator/find?agent_id=",
]
LOGIN_FORMS = [
    ("/agent/login", ("agent_id", "password")),
    ("/agent/login/code", ("phone",)),
    ("/agent/login/verify", ("phone", "code")),
    ("/operator/login", ("name", "password")),
    ("/subscriber/login/code", ("phone",)),
    ("/subscriber/login/verify", ("phone", "code")),
]
FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def _post_all(
    world: WebWorld, forms: list[tuple[str, tuple[str, ...]]], data: st.DataObject
) -> None:
    token = await world.csrf("/agent/login")
    for path, names in forms:
        fields = {name: data.draw(TEXT, label=f"{path} {name}") for name in names}
        response = await world.http.post(path, data={"csrf": token, **fields})
        assert response.status_code < 500, (path, fields, response.text[:300])


@pytest.mark.parametrize("who", ["agent", "operator", "subscriber", "nobody"])
@FUZZ
@given(data=st.data())
async def test_forms_never_fail(web_world: WebWorld, who: str, data: st.DataObject) -> None:
    if who == "agent" and "smsmenu_session" not in web_world.http.cookies:
        await web_world.post_form(
            "/agent/login",
            "/agent/login",
            agent_id=str(web_world.agent.agent_id),
            password=MGMT_PIN,
        )
    if who == "operator" and "smsmenu_session" not in web_world.http.cookies:
        await new_operator(web_world, "fuzz", Role.SUPERVISOR)
        await web_world.post_form(
            "/operator/login", "/operator/login", name="fuzz", password=OPERATOR_PASSWORD
        )
    if who == "subscriber" and "smsmenu_session" not in web_world.http.cookies:
        await web_world.post_form("/subscriber/login/code", "/subscriber/login", phone=MOBILE)
        await web_world.post_form(
            "/subscriber/login/verify",
            "/subscriber/login",
            phone=MOBILE,
            code=await web_world.last_code(MOBILE),
        )
    forms = {
        "agent": AGENT_FORMS,
        "operator": OPERATOR_FORMS,
        "subscriber": SUBSCRIBER_FORMS,
        "nobody": LOGIN_FORMS,
    }[who]
    await _post_all(web_world, forms, data)
    if who == "operator":
        for query in OPERATOR_QUERIES:
            value = data.draw(TEXT, label=query)
            response = await web_world.http.get(query, params={query.rsplit("?", 1)[1][:-1]: value})
            assert response.status_code < 500, (query, value)


CARD_ROW = st.lists(TEXT, min_size=0, max_size=5).map(",".join)
CARD_FILE = st.one_of(
    st.binary(max_size=200),
    st.lists(CARD_ROW, max_size=6).map(
        lambda rows: "\n".join(["number,pin,value,expires", *rows]).encode()
    ),
)


@FUZZ
@given(content=CARD_FILE, batch=TEXT)
async def test_card_files_never_fail(web_world: WebWorld, content: bytes, batch: str) -> None:
    """Any file uploaded as a card batch: refused or imported, never a 5xx."""
    if "smsmenu_session" not in web_world.http.cookies:
        await new_operator(web_world, "cards", Role.STAFF)
        await web_world.post_form(
            "/operator/login", "/operator/login", name="cards", password=OPERATOR_PASSWORD
        )
    token = await web_world.csrf("/operator/cards")
    response = await web_world.http.post(
        "/operator/cards/import",
        data={"csrf": token, "batch": batch},
        files={"file": ("cards.csv", content, "text/csv")},
    )
    assert response.status_code < 500, (content, batch, response.text[:300])
    if response.status_code == 303:
        page = await web_world.http.get(response.headers["location"])
        assert page.status_code == 200

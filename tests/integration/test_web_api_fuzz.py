"""Schemathesis against the API's own OpenAPI document, over real HTTP on SQLite and
PostgreSQL: whatever it sends (valid and invalid bodies, parameters, headers, methods), no
5xx, every response as documented, invalid input refused. (A request of a valid shape may be
refused by a business rule: that check is left out.)"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from smsmenu.ledger.api import Billing, Kind
from smsmenu.settings import Settings
from smsmenu.web import apikeys
from smsmenu.web.context import WebContext
from smsmenu.web.openapi import DOCUMENT
from tests import servers
from tests.ledger_fixtures import migrate, new_agent
from tests.web_server import WebThread

schema = schemathesis.openapi.from_dict(DOCUMENT)


async def _seed(web: WebThread) -> str:
    ledger = web.ledger
    await new_agent(ledger, "13800000001")
    await ledger.add_subscriber("13900000002", Kind.MOBILE, Billing.PREPAID)
    await ledger.add_subscriber("02787654321", Kind.FIXED, Billing.POSTPAID, -3000)
    return await apikeys.create(WebContext.of(ledger), "fuzz", "operator")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(base URL, operator key) of a seeded web part over HTTP."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path_factory.mktemp("fuzz") / "ledger.db"
        shutil.copyfile(template, path)
        url, drop = f"sqlite+aiosqlite:///{path}", None
    else:
        base: str = request.getfixturevalue("postgres_base")
        raw = asyncio.run(servers.create_database(base))
        url, drop = raw.replace("postgresql://", "postgresql+asyncpg://", 1), raw
        asyncio.run(migrate(url))
    try:
        with WebThread(Settings(database_url=url)) as web:
            key = web.run(_seed(web))
            yield web.url, key
    finally:
        if drop:
            asyncio.run(servers.drop_database(drop))


@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_never_fails_and_answers_as_documented(
    case: schemathesis.Case, fuzz_server: tuple[str, str]
) -> None:
    url, key = fuzz_server
    case.call_and_validate(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        # a valid shape may still be refused by a business rule (a 4xx naming it)
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )

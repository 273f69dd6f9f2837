"""The Alembic migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from smsmenu.ledger.db import (
    HEAD,
    SchemaMissing,
    alembic_config,
    check_schema,
    create_engine,
    head_revision,
    upgrade,
)
from smsmenu.ledger.models import Base


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await check_schema(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        await upgrade(engine)  # upgrading an up-to-date schema is a no-op
    finally:
        await engine.dispose()


async def test_missing_schema_is_reported(tmp_path: Any) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(SchemaMissing, match="smsmenu db upgrade"):
            await check_schema(engine)
        await upgrade(engine)
        await check_schema(engine)
    finally:
        await engine.dispose()


def test_head_constant_is_the_newest_migration() -> None:
    assert head_revision() == HEAD


def test_pg_recharge_function_uses_the_notices_marker() -> None:
    """ledger_post_recharge (0002, replaced by 0003) puts balances where ``notices.MARK`` stands
    in the texts."""
    import importlib

    from smsmenu.ledger import notices

    for name in ("0002_pg_post_recharge", "0003_password_guards"):
        migration = importlib.import_module(f"smsmenu.ledger.migrations.versions.{name}")
        assert migration.MARK == notices.MARK
        assert migration.POST_RECHARGE.count(notices.MARK) == 2


async def test_the_newest_migration_goes_down_and_up_again(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, "0002")
        await upgrade(engine)
        await check_schema(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def _downgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, revision)


async def test_the_databases_yuan_is_format_yuan(ledger_pg_url: str) -> None:
    """PostgreSQL fills the balances into a recharge's notices itself (``ledger_yuan``, in the
    same statement as the money): it must write them exactly as Python's ``format_yuan``."""
    import random

    import asyncpg

    from smsmenu.money import format_yuan

    edges = [0, 1, 9, 10, 99, 100, 101, 12_345, -1, -99, -100, -12_345, 10**15, -(10**15)]
    rng = random.Random(8)
    values = edges + [rng.randint(-(10**12), 10**12) for _ in range(500)]
    conn = await asyncpg.connect(ledger_pg_url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            "SELECT v, ledger_yuan(v) AS y FROM unnest($1::bigint[]) AS v", values
        )
    finally:
        await conn.close()
    assert {row["v"]: row["y"] for row in rows} == {v: format_yuan(v) for v in values}


def test_pg_booking_uses_the_validity_markers() -> None:
    import importlib

    from smsmenu.ledger import notices

    migration = importlib.import_module("smsmenu.ledger.migrations.versions.0006_cards_and_closing")
    marks = (migration.VALID_OPEN, migration.VALID_CLOSE, migration.DATE_MARK)
    assert marks == (notices.VALID_OPEN, notices.VALID_CLOSE, notices.DATE_MARK)
    assert all(mark in migration.FUNCTIONS[0] for mark in marks)

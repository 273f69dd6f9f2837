"""Opening the ledger's database and upgrading its schema (Alembic, migrations in the package).

SQLite runs in WAL mode with a busy timeout and ``BEGIN IMMEDIATE`` transactions (a writer
takes the write lock at the start, so two writers never deadlock upgrading a read lock);
PostgreSQL runs at READ COMMITTED with guarded updates doing the concurrency work.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:  # Alembic is imported only when needed: it costs ~0.4 s per CLI command
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class SchemaMissing(RuntimeError):
    """The database has no ledger schema, or an older one: run ``smsmenu db upgrade``."""


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, pool_size: int = 10, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url`` (``postgresql+asyncpg://`` or ``sqlite+aiosqlite://``).
    ``pool_size``: PostgreSQL connections kept open (SQLite keeps its default pool)."""
    if is_sqlite(url):
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        _sqlite_pragmas(engine)
        return engine
    # No overflow: an overflow connection is closed when it comes back, so under load a pool
    # with overflow connects and disconnects (TLS probe, authentication) per operation.
    return create_async_engine(url, pool_size=pool_size, max_overflow=0, **kwargs)


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions are off) ...
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # ... as BEGIN IMMEDIATE: take the write lock up front (no upgrade deadlocks).
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Create or upgrade the ledger schema to ``revision`` (what ``smsmenu db upgrade`` runs)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


#: The newest migration; a test checks it against the migration scripts. Checking the schema
#: reads alembic_version directly so that every command need not load Alembic.
HEAD = "0007"


def head_revision() -> str | None:
    """The newest revision according to the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def check_schema(engine: AsyncEngine) -> None:
    """Raise ``SchemaMissing`` unless the schema is at the newest revision."""
    async with engine.connect() as conn:
        try:
            current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except DBAPIError:
            current = None
    if current != HEAD:
        state = "no ledger schema" if current is None else f"schema at {current}, not {HEAD}"
        raise SchemaMissing(f"{state}: run `smsmenu db upgrade`")

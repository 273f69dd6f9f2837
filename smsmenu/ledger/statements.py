"""The ledger's SQL statements, built once at import (SQLAlchemy Core with ``bindparam``).

Building a statement on every call costs about 40% of the client's CPU per transaction
(LIBRARY-NOTES), so the hot paths execute these prepared shapes with parameters only; the
recharge writers execute them compiled once for their drivers (``AsyncpgStatement``,
``SqliteStatement``), not through SQLAlchemy.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import bindparam, case, exists, false, insert, select, update

from smsmenu.ledger.models import UTCDateTime, accounts, agents, lines, recharges, subscribers, txns

_FLOAT = accounts.alias("fa")  # the agent's float
_PHONE = subscribers.alias("ph")  # the agent's bound phone as a subscriber
_TARGET = subscribers.alias("tg")  # a recharge's target
_TARGET_ACCOUNT = accounts.alias("ta")
_NOTIFY = subscribers.alias("nt")  # a recharge's notify number, if it is a subscriber

_AVAILABLE = (accounts.c.balance - accounts.c.pending).label("available")

#: Everything the rules of an agent operation look at, in one row: the agent, its float, its
#: bound phone, (``number``, may be "") the target and (``notify``, may be NULL) the notify
#: number's subscriber. No row: no such agent.
AGENT_CONTEXT_COLUMNS = (
    agents.c.id,
    agents.c.status,
    agents.c.phone,
    agents.c.commission_bp,
    agents.c.trade_hash,
    agents.c.pin_failures,
    agents.c.pin_locked_until,
    agents.c.account_id,
    agents.c.version,
    _FLOAT.c.balance,
    _FLOAT.c.pending,
    _PHONE.c.status.label("phone_status"),
    _PHONE.c.account_id.label("phone_account"),
    _TARGET.c.kind.label("t_kind"),
    _TARGET.c.billing.label("t_billing"),
    _TARGET.c.status.label("t_status"),
    _TARGET.c.account_id.label("t_account"),
    _TARGET_ACCOUNT.c.balance.label("t_balance"),
    _NOTIFY.c.kind.label("n_kind"),
    _NOTIFY.c.status.label("n_status"),
)


def with_agent_context(agents_from: Any, number: Any, notify: Any) -> Any:
    """``agents_from`` (a FROM clause with ``agents`` in it) joined with the rest of the agent
    context: the float, the bound phone, the target ``number`` and the ``notify`` number."""
    return (
        agents_from.outerjoin(_FLOAT, _FLOAT.c.id == agents.c.account_id)
        .outerjoin(_PHONE, _PHONE.c.number == agents.c.phone)
        .outerjoin(_TARGET, _TARGET.c.number == number)
        .outerjoin(_TARGET_ACCOUNT, _TARGET_ACCOUNT.c.id == _TARGET.c.account_id)
        .outerjoin(_NOTIFY, _NOTIFY.c.number == notify)
    )


AGENT_CONTEXT = (
    select(*AGENT_CONTEXT_COLUMNS)
    .select_from(with_agent_context(agents, bindparam("number"), bindparam("notify")))
    .where(agents.c.id == bindparam("agent_id"))
)

_KNOWN = txns.alias("known")
#: A recharge's context in one row: the agent's, whether its key is stored (``known``) and,
#: when ``since`` is given, whether the agent recharged the same amount to the same number
#: since then without failing (``duplicate``, SPEC §3).
RECHARGE_CONTEXT = AGENT_CONTEXT.add_columns(
    _KNOWN.c.id.label("known"),
    case(
        (bindparam("since", type_=UTCDateTime()).is_(None), false()),
        else_=exists().where(
            recharges.c.agent_id == agents.c.id,
            recharges.c.number == bindparam("number"),
            recharges.c.amount_fen == bindparam("amount"),
            recharges.c.created_at >= bindparam("since", type_=UTCDateTime()),
            recharges.c.status != "failed",
        ),
    ).label("duplicate"),
).outerjoin(_KNOWN, _KNOWN.c.key == bindparam("key"))
#: The agent's row alone (what a worker caches), by id.
AGENT_ROW = (
    select(
        agents.c.id,
        agents.c.version,
        agents.c.status,
        agents.c.phone,
        agents.c.commission_bp,
        agents.c.trade_hash,
        agents.c.pin_failures,
        agents.c.pin_locked_until,
        agents.c.account_id,
        _PHONE.c.status.label("phone_status"),
    )
    .select_from(agents.outerjoin(_PHONE, _PHONE.c.number == agents.c.phone))
    .where(agents.c.id == bindparam("agent_id"))
)

_AGENT_VIEW = select(agents, accounts.c.balance, accounts.c.pending).join(
    accounts, accounts.c.id == agents.c.account_id
)
AGENT_BY_ID = _AGENT_VIEW.where(agents.c.id == bindparam("agent_id"))
AGENT_BY_PHONE = _AGENT_VIEW.where(agents.c.bound_phone == bindparam("phone"))
SUBSCRIBER_BY_NUMBER = (
    select(subscribers, accounts.c.balance)
    .join(accounts, accounts.c.id == subscribers.c.account_id)
    .where(subscribers.c.number == bindparam("number"))
)

# ---- the journal and the idempotency record ------------------------------------------------

INSERT_TXN = insert(txns).returning(txns.c.id)
INSERT_LINES = insert(lines)
INSERT_RECHARGE = insert(recharges)
KEY_LOOKUP = select(txns.c.id, txns.c.op, txns.c.fingerprint).where(txns.c.key == bindparam("key"))
TXN_BY_ID = select(txns).where(txns.c.id == bindparam("txn"))
SET_TXN_RESULT = (
    update(txns)
    .where(txns.c.id == bindparam("txn"))
    .values(balance_after=bindparam("balance_after"))
)
DELETE_TXNS = txns.delete().where(txns.c.id.in_(bindparam("ids", expanding=True)))
RECHARGE_BY_ID = select(recharges).where(recharges.c.tx_id == bindparam("tx_id"))

# ---- balances --------------------------------------------------------------------------------

#: Credit an account; returns its balance and (for a float) its available balance.
CREDIT = (
    update(accounts)
    .where(accounts.c.id == bindparam("acc"))
    .values(balance=accounts.c.balance + bindparam("amount"))
    .returning(accounts.c.balance, _AVAILABLE)
)
#: Debit a float only if its available balance covers it; no row: it does not.
DEBIT_GUARDED = (
    update(accounts)
    .where(accounts.c.id == bindparam("acc"), bindparam("amount") <= _AVAILABLE)
    .values(balance=accounts.c.balance - bindparam("amount"))
    .returning(_AVAILABLE)
)
#: Reserve (two-phase) only if the available balance covers it; no row: it does not.
RESERVE = (
    update(accounts)
    .where(accounts.c.id == bindparam("acc"), bindparam("amount") <= _AVAILABLE)
    .values(pending=accounts.c.pending + bindparam("amount"))
    .returning(_AVAILABLE)
)
POST_RESERVED = (
    update(accounts)
    .where(accounts.c.id == bindparam("acc"))
    .values(
        balance=accounts.c.balance - bindparam("amount"),
        pending=accounts.c.pending - bindparam("amount"),
    )
    .returning(_AVAILABLE)
)
VOID_RESERVED = (
    update(accounts)
    .where(accounts.c.id == bindparam("acc"))
    .values(pending=accounts.c.pending - bindparam("amount"))
    .returning(_AVAILABLE)
)
SET_BALANCE = (
    update(accounts).where(accounts.c.id == bindparam("acc")).values(balance=bindparam("balance"))
)

# ---- group commit (SQLite) -----------------------------------------------------------------------

BATCH_AGENTS = (
    select(
        agents.c.id,
        agents.c.status,
        agents.c.phone,
        agents.c.commission_bp,
        agents.c.trade_hash,
        agents.c.pin_failures,
        agents.c.pin_locked_until,
        agents.c.account_id,
        _PHONE.c.status.label("phone_status"),
    )
    .select_from(agents.outerjoin(_PHONE, _PHONE.c.number == agents.c.phone))
    .where(agents.c.id.in_(bindparam("ids", expanding=True)))
)
BATCH_TARGETS = select(
    subscribers.c.number,
    subscribers.c.kind,
    subscribers.c.status,
    subscribers.c.account_id,
).where(subscribers.c.number.in_(bindparam("numbers", expanding=True)))
#: SQLite's batch reads its accounts under the database's write lock (BEGIN IMMEDIATE).
BATCH_ACCOUNTS = (
    select(accounts.c.id, accounts.c.balance, accounts.c.pending)
    .where(accounts.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(accounts.c.id)
)

# ---- passwords (the guarded writes of each password are built in ``passwords``) ------------

#: What the operations behind a password look at: the agent, its bound phone's status, and the
#: hash, count of wrong attempts and lock of both passwords. No row: no such agent.
AGENT_PASSWORDS = (
    select(
        agents.c.id,
        agents.c.status,
        _PHONE.c.status.label("phone_status"),
        agents.c.trade_hash,
        agents.c.pin_failures,
        agents.c.pin_locked_until,
        agents.c.mgmt_hash,
        agents.c.mgmt_failures,
        agents.c.mgmt_locked_until,
    )
    .select_from(agents.outerjoin(_PHONE, _PHONE.c.number == agents.c.phone))
    .where(agents.c.id == bindparam("agent_id"))
)


@functools.cache
def _dialect(name: str) -> Any:
    """The dialect the writers' statements are compiled for, imported on first use (a process
    on SQLite never loads PostgreSQL's, which costs a command line tenths of a second)."""
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

        return asyncpg_dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
    from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

    return sqlite_dialect(paramstyle="named")


class AsyncpgStatement:
    """A Core statement compiled once for asyncpg ($1, $2 …), for the paths that talk to asyncpg
    directly (one round trip, no SQLAlchemy transaction): ``sql`` and its arguments in order."""

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=_dialect("postgresql"))
        self.sql = str(compiled)
        self._names = list(compiled.positiontup or [])
        # the values the statement carries itself (literals such as ``+ 1``)
        self._constants = {
            name: bind.value for name, bind in compiled.binds.items() if not bind.required
        }

    def args(self, params: dict[str, Any]) -> list[Any]:
        return [params[n] if n in params else self._constants[n] for n in self._names]


class AsyncpgRow:
    """Attribute access to an asyncpg record (what rules and checks read rows with)."""

    __slots__ = ("_record",)

    def __init__(self, record: Any) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        return self._record[name]


def inserting(table: Any, columns: Any, *returning: Any) -> Any:
    """An INSERT of ``columns`` of ``table``, one bound parameter each (for the writers, which
    execute statements compiled once, not through SQLAlchemy)."""
    statement = insert(table).values({name: bindparam(name) for name in columns})
    return statement.returning(*returning) if returning else statement


class SqliteStatement:
    """A Core statement compiled once for the standard ``sqlite3`` module (``:name``
    parameters), for the embedded writer's own connection. Values go in as SQLite stores them
    (``sqlite_value``: aware datetimes as naive UTC text, as ``models.UTCDateTime`` does)."""

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=_dialect("sqlite"))
        self.sql = str(compiled)
        self._constants = {
            name: bind.value for name, bind in compiled.binds.items() if not bind.required
        }

    def params(self, values: dict[str, Any]) -> dict[str, Any]:
        return {**self._constants, **{k: sqlite_value(v) for k, v in values.items()}}


def sqlite_value(value: Any) -> Any:
    """A value as SQLite stores it through ``models.UTCDateTime`` (and SQLAlchemy's ``Date``:
    ISO text)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def sqlite_date(value: str | None) -> date | None:
    """A ``Date`` column's value as SQLite keeps it (ISO text)."""
    return None if value is None else date.fromisoformat(value)

"""The operator's staff accounts for the web pages (SPEC §7): made from the command line, each
a role (``staff``, or ``supervisor``: reversals too) and a password hashed like the agents'
(argon2 of an HMAC under ``SECRET_KEY``).

A login counts its attempt before it checks the password (a guarded write: at most
``PIN_MAX_FAILURES`` attempts are counted until a right one or the lock clears them), and the
attempt that makes the third wrong one locks the account for ``PIN_LOCK``, as for agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from smsmenu.ledger import rules
from smsmenu.ledger.models import operators
from smsmenu.web.context import WebContext
from smsmenu.web.refusals import WebRefusal, WebRule

MIN_PASSWORD = 10
#: The verify cache's owners of operators' hashes, apart from agents' (``pins.PinVault``).
_OWNER_BASE = 1 << 40


class Role(StrEnum):
    STAFF = "staff"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class OperatorView:
    id: int
    name: str
    role: Role


async def create(web: WebContext, name: str, role: Role, password: str) -> OperatorView:
    if not name or len(name) > 64:
        raise WebRefusal(WebRule.BAD_REQUEST)
    if len(password) < MIN_PASSWORD:
        raise WebRefusal(WebRule.WEAK_PASSWORD, length=MIN_PASSWORD)
    try:
        async with web.ledger.engine.begin() as conn:
            new_id = (
                await conn.execute(
                    insert(operators)
                    .values(
                        name=name,
                        role=role.value,
                        password_hash=web.ledger.pins.hash(password),
                        failures=0,
                        created_at=web.clock.now(),
                    )
                    .returning(operators.c.id)
                )
            ).scalar_one()
    except IntegrityError:
        raise WebRefusal(WebRule.NAME_TAKEN) from None
    return OperatorView(new_id, name, role)


async def get(web: WebContext, operator_id: int) -> OperatorView | None:
    async with web.ledger.engine.connect() as conn:
        row = (
            await conn.execute(
                select(operators.c.id, operators.c.name, operators.c.role).where(
                    operators.c.id == operator_id
                )
            )
        ).first()
    return None if row is None else OperatorView(row.id, row.name, Role(row.role))


async def login(web: WebContext, name: str, password: str) -> OperatorView:
    """The operator ``name`` if ``password`` is theirs; LOGIN_FAILED (unknown name or wrong
    password alike) or OPERATOR_LOCKED."""
    now, table = web.clock.now(), operators
    async with web.ledger.engine.begin() as conn:
        row = (await conn.execute(select(table).where(table.c.name == name))).first()
        if row is None:
            raise WebRefusal(WebRule.LOGIN_FAILED)
        if row.locked_until is not None and row.locked_until <= now:  # the lock ended
            await conn.execute(
                update(table)
                .where(table.c.id == row.id, table.c.locked_until == row.locked_until)
                .values(failures=0, locked_until=None)
            )
        counted = (
            await conn.execute(
                update(table)
                .where(table.c.id == row.id, table.c.failures < rules.PIN_MAX_FAILURES)
                .values(failures=table.c.failures + 1)
                .returning(table.c.failures)
            )
        ).scalar()
    if counted is None:
        raise WebRefusal(WebRule.OPERATOR_LOCKED)
    owner = _OWNER_BASE + row.id
    right = await web.ledger.pins.check(owner, row.password_hash, password)
    async with web.ledger.engine.begin() as conn:
        if right:
            await conn.execute(
                update(table).where(table.c.id == row.id).values(failures=0, locked_until=None)
            )
        elif counted >= rules.PIN_MAX_FAILURES:
            await conn.execute(
                update(table).where(table.c.id == row.id).values(locked_until=now + rules.PIN_LOCK)
            )
    if not right:
        raise WebRefusal(
            WebRule.OPERATOR_LOCKED if counted >= rules.PIN_MAX_FAILURES else WebRule.LOGIN_FAILED
        )
    return OperatorView(row.id, row.name, Role(row.role))

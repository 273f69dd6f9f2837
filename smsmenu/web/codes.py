"""One-time codes sent by SMS (a login by phone, a new bound phone).

A code is 6 random digits, good for ``web_code_ttl_s``, for one purpose and phone; the database
keeps only its HMAC under ``SECRET_KEY`` and the SMS goes through the outbox, written in the
same transaction (a ``smsmenu serve`` worker sends it). A phone gets at most
``web_codes_per_hour`` codes an hour; a code takes at most ``MAX_TRIES`` tries and is used
once. Codes are never logged: the outbox's log line names the row, not its text.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlalchemy import delete, func, insert, select, update

from smsmenu.ledger import outbox
from smsmenu.ledger.models import login_codes
from smsmenu.ledger.unit_of_work import unit_of_work
from smsmenu.web.context import WebContext
from smsmenu.web.refusals import WebRefusal, WebRule

MAX_TRIES = 3
CODE_DIGITS = 6


def _mac(web: WebContext, phone: str, purpose: str, code: str) -> str:
    return web.keys.mac("web-code", phone, purpose, code)


async def send(web: WebContext, phone: str, purpose: str) -> None:
    """Make a code for ``phone`` and queue its SMS; CODE_RATE_LIMITED past the hourly limit."""
    settings, now = web.settings, web.clock.now()
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    async with unit_of_work(web.ledger.engine) as conn:
        if web.ledger.ctx.postgres:  # one phone's senders in turn, so the limit holds
            await conn.execute(
                select(func.pg_advisory_xact_lock(func.hashtext("web-code:" + phone)))
            )
        sent = (
            await conn.execute(
                select(func.count())
                .select_from(login_codes)
                .where(
                    login_codes.c.phone == phone,
                    login_codes.c.created_at > now - timedelta(hours=1),
                )
            )
        ).scalar_one()
        if sent >= settings.web_codes_per_hour:
            raise WebRefusal(WebRule.CODE_RATE_LIMITED)
        await conn.execute(  # codes older than the hourly count are of no use any more
            delete(login_codes).where(
                login_codes.c.phone == phone, login_codes.c.created_at <= now - timedelta(hours=1)
            )
        )
        await conn.execute(
            insert(login_codes).values(
                phone=phone,
                purpose=purpose,
                code_hash=_mac(web, phone, purpose, code),
                attempts=0,
                used=False,
                created_at=now,
                expires_at=now + timedelta(seconds=settings.web_code_ttl_s),
            )
        )
        text = web.catalogue.render(
            "web_code_sms", code=code, minutes=max(1, settings.web_code_ttl_s // 60)
        )
        await outbox.add(
            conn,
            outbox.row(
                now=now,
                source=settings.service_number,
                destination=phone,
                text=text,
                kind="web_code",
                dedup_key=f"web-code:{uuid.uuid4().hex}",
            ),
        )
        await conn.commit()


async def check(web: WebContext, phone: str, purpose: str, code: str) -> bool:
    """Whether ``code`` is the newest live code of ``phone`` for ``purpose``; the try is
    counted first (a guarded write), a right code is used up."""
    now = web.clock.now()
    async with unit_of_work(web.ledger.engine) as conn:
        newest = (
            select(login_codes.c.id)
            .where(
                login_codes.c.phone == phone,
                login_codes.c.purpose == purpose,
                login_codes.c.used.is_(False),
                login_codes.c.expires_at > now,
            )
            .order_by(login_codes.c.id.desc())
            .limit(1)
        ).scalar_subquery()
        row = (
            await conn.execute(
                update(login_codes)
                .where(login_codes.c.id == newest, login_codes.c.attempts < MAX_TRIES)
                .values(attempts=login_codes.c.attempts + 1)
                .returning(login_codes.c.id, login_codes.c.code_hash)
            )
        ).first()
        if row is None:
            await conn.commit()
            return False
        right = secrets.compare_digest(row.code_hash, _mac(web, phone, purpose, code))
        if right:
            used = await conn.execute(
                update(login_codes)
                .where(login_codes.c.id == row.id, login_codes.c.used.is_(False))
                .values(used=True)
                .returning(login_codes.c.id)
            )
            right = used.first() is not None
        await conn.commit()
        return right

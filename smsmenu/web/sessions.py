"""Logged-in browsers: a random token in a signed, HttpOnly, SameSite cookie; the database
keeps only its HMAC under ``SECRET_KEY`` (a copy of the table logs nobody in), who it is and
until when. A login lasts ``web_session_s`` from its last use; logging out deletes the row."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from smsmenu.clock import Clock
from smsmenu.keys import SecretKeys
from smsmenu.ledger.models import web_sessions
from smsmenu.web.statements import one_statement


class WebSessions:
    def __init__(self, engine: AsyncEngine, keys: SecretKeys, clock: Clock, ttl_s: int) -> None:
        self._engine, self._keys, self._clock = engine, keys, clock
        self._ttl = timedelta(seconds=ttl_s)

    def _id(self, token: str) -> str:
        return self._keys.mac("web-session", token)

    def sign(self, token: str) -> str:
        """The cookie's value: the token and its signature."""
        return f"{token}.{self._keys.mac('web-cookie', token)[:32]}"

    def unsign(self, cookie: str) -> str | None:
        token, _, signature = cookie.partition(".")
        expected = self._keys.mac("web-cookie", token)[:32]
        return token if token and hmac.compare_digest(signature, expected) else None

    async def create(self, who: str) -> str:
        """A new login for ``who`` (``agent:<id>``, ``operator:<id>``): its cookie value. The
        logins that expired are deleted meanwhile."""
        token = secrets.token_urlsafe(32)
        now = self._clock.now()
        async with self._engine.begin() as conn:
            await conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))
            await conn.execute(
                insert(web_sessions).values(
                    id=self._id(token), who=who, created_at=now, expires_at=now + self._ttl
                )
            )
        return self.sign(token)

    async def who(self, cookie: str | None) -> str | None:
        """Who the cookie logs in, or None. Its expiry is moved on once half of it has run (a
        page view is a read, not a write, most of the time)."""
        token = self.unsign(cookie) if cookie else None
        if token is None:
            return None
        now, key = self._clock.now(), self._id(token)
        live = and_(web_sessions.c.id == key, web_sessions.c.expires_at > now)
        async with one_statement(self._engine) as conn:
            found = select(web_sessions.c.who, web_sessions.c.expires_at).where(live)
            row = (await conn.execute(found)).first()
        if row is None:
            return None
        if row.expires_at - now < self._ttl / 2:
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(web_sessions).where(live).values(expires_at=now + self._ttl)
                )
        return str(row.who)

    async def end(self, cookie: str | None) -> None:
        token = self.unsign(cookie) if cookie else None
        if token is not None:
            async with self._engine.begin() as conn:
                await conn.execute(delete(web_sessions).where(web_sessions.c.id == self._id(token)))

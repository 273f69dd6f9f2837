"""Recharge cards (充值卡, SPEC §8): batches imported from a file, shown, counted and voided;
a card redeemed once for call credit or a catalogue item (``products``).

Theory of operation
-------------------
*Money.* Cards are sold outside the ledger, so importing books nothing. Redeeming moves the
face value from the card liability (``models.CARD_LIABILITY``) to the subscriber; a card that
pays for an item moves its price on to the add-on sales (``models.ADDON_SALES``), and the rest
stays as call credit. One transaction, with the idempotency key stored first (``unit_of_work``).

*PINs.* A card PIN is stored only as HMAC-SHA256 under a key derived from ``SECRET_KEY``
(``keys``, purpose ``card-pin``) of the card's own random salt and the PIN (``CardPins``). A
fast hash is safe here because the key is kept outside the database (a dump alone gives nothing
to guess against) and because guesses through the product are counted: it lets 100,000 cards
be imported in seconds, where argon2 would take minutes.

*Lock-out.* Wrong card PINs count per card and per sending phone (``cards.failures``,
``subscribers.card_failures``): three in a row lock the card, or the phone's card redemptions,
for 30 minutes. As with the trade password (``passwords``), the attempt is the guarded write:
both counts go up before the PIN is compared, and only while neither is locked (the write that
makes a count three sets the lock). Unlike the trade password (argon2, milliseconds), a card
PIN is compared in microseconds, so the comparison happens inside the transaction that counted
it, with the phone's and the card's rows locked: concurrent attempts from one phone or on one
card queue on those rows. A wrong PIN commits its count and is refused; a right one redeems the
card and clears the counts in the same commit (one commit per redemption). So however many
attempts race, at most three per card and three per phone reach the comparison in a lock
period. An unknown card number counts against the phone and reads exactly as a wrong PIN.
Rows are locked in one order (phone, card, then the phone's account), so attempts never
deadlock.

*Once.* The redemption is a guarded ``UPDATE cards ... WHERE status = 'issued' AND expires >=
today``: of two phones racing the same card, one redeems it, the other is told it was used.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Date,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from smsmenu.ledger import holdings, notices, outbox, rules
from smsmenu.ledger import statements as sql
from smsmenu.ledger.api import (
    Billing,
    CardStats,
    CardView,
    RedeemView,
    Refusal,
    Rule,
    SubscriberStatus,
)
from smsmenu.ledger.context import LedgerContext
from smsmenu.ledger.models import (
    ADDON_SALES,
    CARD_LIABILITY,
    UTCDateTime,
    accounts,
    allowances,
    card_batches,
    cards,
    lines,
    subscribers,
    txns,
)
from smsmenu.ledger.products import Item
from smsmenu.ledger.unit_of_work import KeyTaken, claim_key, first_result, unit_of_work
from smsmenu.messages import Route
from smsmenu.money import parse_yuan

HEADER = ["number", "pin", "value", "expires"]
ISSUED, REDEEMED, VOID, EXPIRED, LOCKED = "issued", "redeemed", "void", "expired", "locked"
MAX_VALUE_FEN = 1_000_000  # 10,000 yuan
CHUNK = 5_000  # cards per INSERT (and per step of the progress bar)


class CardPins:
    """Card PINs as HMAC-SHA256 of salt and PIN under ``key`` (see the module notes);
    ``verifies`` counts comparisons (tests look at it)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.verifies = 0

    def hash(self, salt: str, pin: str) -> str:
        return hmac.new(self._key, f"{salt}:{pin}".encode(), hashlib.sha256).hexdigest()

    def verify(self, salt: str, stored: str, pin: str) -> bool:
        self.verifies += 1
        return hmac.compare_digest(self.hash(salt, pin), stored)


# ---- batches ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardRow:
    line: int
    number: str
    pin: str
    value_fen: int
    expires: date


def parse_file(ctx: LedgerContext, text: str) -> list[CardRow]:
    """The rows of a batch file (SPEC §8: ``number,pin,value,expires``), every one checked;
    BAD_CARD_FILE naming the first bad line (the header is line 1)."""
    # newline="": csv sees the file's own line ends (a lone CR is one, not a field's character)
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header] != HEADER:
            raise Refusal(Rule.BAD_CARD_FILE, line=1, reason=ctx.text("card_file_header"))
        today, seen = ctx.today(), set()
        rows: list[CardRow] = []
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            row = _row(ctx, line, fields, today)
            if row.number in seen:
                raise Refusal(Rule.BAD_CARD_FILE, line=line, reason=ctx.text("card_file_twice"))
            seen.add(row.number)
            rows.append(row)
    except csv.Error:  # e.g. a field over csv's size limit
        line = max(reader.line_num, 1)
        raise Refusal(Rule.BAD_CARD_FILE, line=line, reason=ctx.text("card_file_csv")) from None
    if not rows:
        raise Refusal(Rule.BAD_CARD_FILE, line=1, reason=ctx.text("card_file_empty"))
    return rows


def _row(ctx: LedgerContext, line: int, fields: list[str], today: date) -> CardRow:
    def bad(reason: str) -> Refusal:
        return Refusal(Rule.BAD_CARD_FILE, line=line, reason=ctx.text(reason))

    if len(fields) != 4:
        raise bad("card_file_columns")
    number, pin, value, expires = (f.strip() for f in fields)
    if not rules.card_number_ok(number):
        raise bad("card_file_number")
    if not rules.card_pin_ok(pin):
        raise bad("card_file_pin")
    fen = parse_yuan(value)
    if fen is None or not 0 < fen <= MAX_VALUE_FEN:
        raise bad("card_file_value")
    try:
        day = date.fromisoformat(expires) if len(expires) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise bad("card_file_expires")
    if day < today:
        raise bad("card_file_expired")
    return CardRow(line, number, pin, fen, day)


async def import_batch(
    ctx: LedgerContext,
    name: str,
    rows: list[CardRow],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Store a new batch of checked ``rows`` in one transaction (no journal line): the batch's
    face value in fen. Refused as a whole (BATCH_EXISTS, or BAD_CARD_FILE naming the line of a
    number already known). ``progress`` hears how many cards each step stored."""
    if not name.strip() or len(name) > 64:
        raise Refusal(Rule.BAD_CARD_FILE, line=0, reason=ctx.text("card_file_batch_name"))
    now = ctx.clock.now()
    async with unit_of_work(ctx.engine) as conn:
        try:
            batch = (
                await conn.execute(
                    insert(card_batches)
                    .values(name=name, created_at=now)
                    .returning(card_batches.c.id)
                )
            ).scalar_one()
        except IntegrityError:
            raise Refusal(Rule.BATCH_EXISTS, batch=name) from None
        await _refuse_known(ctx, conn, rows)
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            try:
                await conn.execute(insert(cards), [_stored(ctx, batch, row) for row in chunk])
            except IntegrityError:  # a number stored meanwhile by a concurrent import
                raise Refusal(
                    Rule.BAD_CARD_FILE, line=chunk[0].line, reason=ctx.text("card_file_known")
                ) from None
            if progress is not None:
                progress(len(chunk))
        await conn.commit()
    if ctx.postgres:  # the planner's statistics for the rows just stored (else seq scans)
        async with ctx.engine.connect() as conn:
            await conn.execute(text("ANALYZE cards"))
            await conn.commit()
    return sum(row.value_fen for row in rows)


async def _refuse_known(ctx: LedgerContext, conn: AsyncConnection, rows: list[CardRow]) -> None:
    by_number = {row.number: row.line for row in rows}
    known_stmt = select(cards.c.number).where(
        cards.c.number.in_(bindparam("numbers", expanding=True))
    )
    numbers = list(by_number)
    for start in range(0, len(numbers), 1000):
        found = (await conn.execute(known_stmt, {"numbers": numbers[start : start + 1000]})).all()
        if found:
            line = min(by_number[r.number] for r in found)
            raise Refusal(Rule.BAD_CARD_FILE, line=line, reason=ctx.text("card_file_known"))


def _stored(ctx: LedgerContext, batch: int, row: CardRow) -> dict[str, Any]:
    salt = secrets.token_hex(16)
    return {
        "number": row.number,
        "batch_id": batch,
        "value_fen": row.value_fen,
        "expires": row.expires,
        "pin_salt": salt,
        "pin_hash": ctx.card_pins.hash(salt, row.pin),
        "status": ISSUED,
        "failures": 0,
    }


def _status_column(today: date, now: datetime) -> Any:
    """A card's status as SPEC §8 names it, computed in SQL."""
    return case(
        (cards.c.status != ISSUED, cards.c.status),
        (cards.c.expires < today, EXPIRED),
        (and_(cards.c.locked_until.is_not(None), cards.c.locked_until > now), LOCKED),
        else_=ISSUED,
    )


async def show(ctx: LedgerContext, number: str) -> CardView:
    """One card (never its PIN); CARD_UNKNOWN."""
    status = _status_column(ctx.today(), ctx.clock.now()).label("shown")
    stmt = (
        select(cards.c.number, card_batches.c.name, cards.c.value_fen, cards.c.expires, status)
        .join(card_batches, card_batches.c.id == cards.c.batch_id)
        .where(cards.c.number == number)
    )
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(stmt)).first()
    if row is None:
        raise Refusal(Rule.CARD_UNKNOWN, number=number)
    return CardView(row.number, row.name, row.value_fen, row.expires, row.shown)


async def stats(ctx: LedgerContext, batch: str | None) -> CardStats:
    """Counts per status and face values, of one batch or of all (BATCH_UNKNOWN)."""
    shown = _status_column(ctx.today(), ctx.clock.now())
    counts = [func.sum(case((shown == name, 1), else_=0)) for name in _COUNTED]
    stmt = select(
        *counts,
        func.coalesce(func.sum(cards.c.value_fen), 0),
        func.coalesce(func.sum(case((cards.c.status == REDEEMED, cards.c.value_fen), else_=0)), 0),
    )
    async with ctx.engine.connect() as conn:
        if batch is not None:
            batch_id = await _batch_id(conn, batch)
            stmt = stmt.where(cards.c.batch_id == batch_id)
        row = (await conn.execute(stmt)).one()
    figures = [int(value or 0) for value in row]
    return CardStats(batch, *figures)


_COUNTED = (ISSUED, REDEEMED, EXPIRED, VOID, LOCKED)


async def _batch_id(conn: AsyncConnection, batch: str) -> int:
    found = (
        await conn.execute(select(card_batches.c.id).where(card_batches.c.name == batch))
    ).scalar()
    if found is None:
        raise Refusal(Rule.BATCH_UNKNOWN, batch=batch)
    return int(found)


async def void(ctx: LedgerContext, batch: str) -> int:
    """A lost box of cards: every card of ``batch`` not yet redeemed is void; how many."""
    async with unit_of_work(ctx.engine) as conn:
        batch_id = await _batch_id(conn, batch)
        result = await conn.execute(
            update(cards)
            .where(cards.c.batch_id == batch_id, cards.c.status == ISSUED)
            .values(status=VOID)
        )
        await conn.execute(
            update(card_batches)
            .where(card_batches.c.id == batch_id)
            .values(voided_at=ctx.clock.now())
        )
        await conn.commit()
    return int(result.rowcount)


# ---- redemption ------------------------------------------------------------------------------

_NOW = bindparam("now", type_=UTCDateTime())
_UNTIL = bindparam("until", type_=UTCDateTime())


def _count(table: Any, key: Any, failures: Any, locked: Any) -> Any:
    """Count one attempt unless a lock holds (a lock that ended starts a new count); the one
    that makes the count three sets the lock."""
    return (
        update(table)
        .where(key == bindparam("key"), or_(locked.is_(None), locked <= _NOW))
        .values(
            {
                failures: case((locked.is_(None), failures + 1), else_=1),
                locked: case(
                    (and_(locked.is_(None), failures + 1 >= rules.PIN_MAX_FAILURES), _UNTIL),
                    else_=None,
                ),
            }
        )
        .returning(failures.label("failures"), locked.label("locked_until"))
    )


_COUNT_PHONE = _count(
    subscribers, subscribers.c.number, subscribers.c.card_failures, subscribers.c.card_locked_until
).returning(
    subscribers.c.status,
    subscribers.c.account_id,
    subscribers.c.billing,
    subscribers.c.valid_until,
)
_COUNT_CARD = _count(cards, cards.c.number, cards.c.failures, cards.c.locked_until).returning(
    cards.c.id, cards.c.value_fen, cards.c.pin_salt, cards.c.pin_hash
)
_PHONE_LOCK = select(subscribers.c.status, subscribers.c.card_locked_until).where(
    subscribers.c.number == bindparam("key")
)
_CARD_LOCK = select(cards.c.locked_until).where(cards.c.number == bindparam("key"))


def _clearable(locked: Any) -> Any:
    """No lock holds but the attempt's own (``own``) or one that has ended."""
    return or_(locked.is_(None), locked <= _NOW, locked == bindparam("own", type_=UTCDateTime()))


def _clear(table: Any, key: Any, failures: Any, locked: Any) -> Any:
    """A right PIN clears the count and its own lock (not another attempt's)."""
    return (
        update(table)
        .where(key == bindparam("key"), _clearable(locked))
        .values({failures: 0, locked: None})
    )


_CLEAR_PHONE = _clear(
    subscribers, subscribers.c.number, subscribers.c.card_failures, subscribers.c.card_locked_until
)
_CLEAR_CARD = _clear(cards, cards.c.number, cards.c.failures, cards.c.locked_until)

_REDEEM = (
    update(cards)
    .where(
        cards.c.id == bindparam("card"),
        cards.c.status == ISSUED,
        cards.c.expires >= bindparam("today"),
    )
    .values(
        status=REDEEMED,
        redeemed_by=bindparam("phone"),
        txn_id=bindparam("txn"),
        redeemed_at=_NOW,
        failures=0,
        locked_until=None,
    )
    .returning(cards.c.value_fen)
)
#: The redeeming phone: its validity extended, its count of wrong card PINs cleared (with its
#: own lock, not another attempt's).
_PHONE_CLEARABLE = _clearable(subscribers.c.card_locked_until)
_SETTLE_PHONE = (
    update(subscribers)
    .where(subscribers.c.number == bindparam("b_phone"))
    .values(
        valid_until=bindparam("b_valid_until", type_=Date()),
        card_failures=case((_PHONE_CLEARABLE, 0), else_=subscribers.c.card_failures),
        card_locked_until=case((_PHONE_CLEARABLE, None), else_=subscribers.c.card_locked_until),
    )
)


async def redeem(
    ctx: LedgerContext,
    phone: str,
    card_number: str,
    pin: str,
    item_code: str | None,
    key: str,
    reply_route: Route | None = None,
) -> RedeemView:
    """Redeem a card for ``phone`` (call credit, or the item ``item_code``); see the module
    notes. Refusals: TARGET_UNKNOWN / SUBSCRIBER_CLOSED (the phone), ITEM_UNKNOWN,
    CARD_INVALID (unknown card or wrong PIN), CARD_LOCKED, CARD_USED, CARD_EXPIRED, CARD_VOID,
    CARD_VALUE_TOO_LOW."""
    item = None
    if item_code is not None:
        item = ctx.products.item(item_code)
        if item is None:
            raise Refusal(Rule.ITEM_UNKNOWN, code=item_code)
    fingerprint = f"{phone}|{card_number}|{item.code if item else ''}"
    try:
        txn = await first_result(ctx.engine, key, "card", fingerprint)
    except Refusal:
        pass  # not stored (or another operation's key: claim_key below says so)
    else:
        return await _view(ctx, txn)
    if not rules.card_number_ok(card_number) or not rules.card_pin_ok(pin):
        raise await _malformed(ctx, phone)
    try:
        return await _redeem(ctx, phone, card_number, pin, item, key, fingerprint, reply_route)
    except KeyTaken:
        txn = await first_result(ctx.engine, key, "card", fingerprint)
    return await _view(ctx, txn)


async def _malformed(ctx: LedgerContext, phone: str) -> Refusal:
    """A card number or PIN that cannot be one: refused, nothing counted (but the phone's own
    refusals come first, as for any attempt)."""
    async with ctx.engine.connect() as conn:
        target = (await conn.execute(sql.SUBSCRIBER_BY_NUMBER, {"number": phone})).first()
    if target is None:
        return Refusal(Rule.TARGET_UNKNOWN, number=phone)
    if target.status == SubscriberStatus.CLOSED:
        return Refusal(Rule.SUBSCRIBER_CLOSED, number=phone)
    return Refusal(Rule.CARD_INVALID)


async def _count_attempt(
    conn: AsyncConnection, phone: str, card_number: str, now: datetime
) -> tuple[Any, Any]:
    """Count the attempt against the phone, then the card (their rows locked till the end of
    the transaction): the phone's row (its count, account and validity) and the card's (None:
    unknown card, counted against the phone only); refused while either is locked (nothing
    counted then)."""
    params = {"now": now, "until": now + rules.PIN_LOCK}
    counted = (await conn.execute(_COUNT_PHONE, {**params, "key": phone})).first()
    if counted is None:
        locked = (await conn.execute(_PHONE_LOCK, {"key": phone})).first()
        if locked is None:
            raise Refusal(Rule.TARGET_UNKNOWN, number=phone)
        if locked.status == SubscriberStatus.CLOSED:  # closed says more than a lock
            raise Refusal(Rule.SUBSCRIBER_CLOSED, number=phone)
        raise Refusal(Rule.CARD_LOCKED, until=locked.card_locked_until)
    if counted.status == SubscriberStatus.CLOSED:
        raise Refusal(Rule.SUBSCRIBER_CLOSED, number=phone)
    card = (await conn.execute(_COUNT_CARD, {**params, "key": card_number})).first()
    if card is None:
        until = (await conn.execute(_CARD_LOCK, {"key": card_number})).scalar()
        if until is not None:
            raise Refusal(Rule.CARD_LOCKED, until=until)
    return counted, card


async def _redeem(
    ctx: LedgerContext,
    phone: str,
    card_number: str,
    pin: str,
    item: Item | None,
    key: str,
    fingerprint: str,
    reply_route: Route | None,
) -> RedeemView:
    """One transaction: the attempt counted, the PIN compared; wrong, the count is committed
    and the attempt refused; right, the card redeemed and the counts cleared, one commit."""
    now, today = ctx.clock.now(), ctx.today()
    price = item.price_fen if item else 0
    async with unit_of_work(ctx.engine) as conn:
        counted, card = await _count_attempt(conn, phone, card_number, now)
        if card is None or not ctx.card_pins.verify(card.pin_salt, card.pin_hash, pin):
            await conn.commit()
            until = counted.locked_until or (card.locked_until if card is not None else None)
            if until is not None:
                raise Refusal(Rule.CARD_LOCKED, until=until)
            raise Refusal(Rule.CARD_INVALID)
        try:
            txn = await claim_key(
                conn,
                key,
                "card",
                fingerprint,
                now,
                number=phone,
                amount_fen=card.value_fen,
                ref=card.id,
            )
            params = {"card": card.id, "today": today, "phone": phone, "txn": txn, "now": now}
            value = (await conn.execute(_REDEEM, params)).scalar()
            if value is None:
                raise await _why_not(conn, card.id, today)
            if price > value:
                raise Refusal(Rule.CARD_VALUE_TOO_LOW, value_fen=value, price_fen=price)
        except Refusal:
            if counted.failures > 1 or card.failures > 1:  # earlier wrong PINs: a right one
                await conn.rollback()  # ends the run, even when refused for another reason
                await _clear_counts(ctx, phone, card_number, counted.locked_until, card)
            raise
        target = counted  # the phone's row, locked since its count
        credit = value - price
        book = [
            {"txn_id": txn, "account_id": CARD_LIABILITY, "amount_fen": -value},
            {"txn_id": txn, "account_id": target.account_id, "amount_fen": credit},
        ]
        if price:
            book.append({"txn_id": txn, "account_id": ADDON_SALES, "amount_fen": price})
        await conn.execute(sql.INSERT_LINES, book)
        balance = (
            (await conn.execute(sql.CREDIT, {"acc": target.account_id, "amount": credit}))
            .one()
            .balance
        )
        valid_until = None
        if target.billing == Billing.PREPAID:
            valid_until = ctx.products.extended(target.valid_until, today, credit)
        settle = {
            "b_phone": phone,
            "now": now,
            "own": counted.locked_until,
            "b_valid_until": valid_until,
        }
        await conn.execute(_SETTLE_PHONE, settle)
        if item is not None:
            await holdings.grant(conn, phone, item, txn, today, now)
        await outbox.add(
            conn,
            notices.card_result(
                ctx,
                now=now,
                key=key,
                txn=txn,
                phone=phone,
                value_fen=value,
                item=item,
                credit_fen=credit,
                balance_fen=balance,
                valid_until=valid_until,
                route=reply_route,
            ),
        )
        await conn.commit()
    code = item.code if item else None
    return RedeemView(
        txn, phone, card_number, value, code, price, credit, balance, valid_until, now
    )


async def _clear_counts(
    ctx: LedgerContext, phone: str, card_number: str, phone_lock: datetime | None, card: Any
) -> None:
    """A right PIN whose redemption was refused for another reason ends the run of wrong ones
    before it (as a redemption would have)."""
    now = ctx.clock.now()
    async with unit_of_work(ctx.engine) as conn:
        await conn.execute(_CLEAR_PHONE, {"key": phone, "now": now, "own": phone_lock})
        await conn.execute(_CLEAR_CARD, {"key": card_number, "now": now, "own": card.locked_until})
        await conn.commit()


async def _why_not(conn: AsyncConnection, card_id: int, today: date) -> Refusal:
    row = (
        await conn.execute(select(cards.c.status, cards.c.expires).where(cards.c.id == card_id))
    ).one()
    if row.status == REDEEMED:
        return Refusal(Rule.CARD_USED)
    if row.status == VOID:
        return Refusal(Rule.CARD_VOID)
    return Refusal(Rule.CARD_EXPIRED, expires=row.expires.isoformat())


async def _view(ctx: LedgerContext, txn: int) -> RedeemView:
    """What redemption ``txn`` did (also a repeat's first result)."""
    stmt = (
        select(
            txns.c.number,
            txns.c.amount_fen,
            txns.c.created_at,
            cards.c.number.label("card_number"),
            subscribers.c.valid_until,
            subscribers.c.billing,
            accounts.c.balance,
        )
        .join(cards, cards.c.id == txns.c.ref)
        .join(subscribers, subscribers.c.number == txns.c.number)
        .join(accounts, accounts.c.id == subscribers.c.account_id)
        .where(txns.c.id == txn)
    )
    sold = select(lines.c.amount_fen).where(
        lines.c.txn_id == txn, lines.c.account_id == ADDON_SALES
    )
    held = select(allowances.c.code).where(allowances.c.txn_id == txn)
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(stmt)).one()
        price = int((await conn.execute(sold)).scalar() or 0)
        code = (await conn.execute(held)).scalar()
    return RedeemView(
        tx_id=txn,
        number=row.number,
        card_number=row.card_number,
        value_fen=row.amount_fen,
        item_code=code,
        price_fen=price,
        credit_fen=row.amount_fen - price,
        balance_fen=row.balance,
        valid_until=row.valid_until if row.billing == "prepaid" else None,
        created_at=row.created_at,
    )

"""Recharge cards on SQLite and PostgreSQL: import, show, stats, void; redemption once, for
call credit or an item; the lock-out; and races on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date

import pytest
from sqlalchemy import func, select

from smsmenu.clock import FakeClock
from smsmenu.ledger.api import Billing, Kind, Refusal, Rule, SubscriberStatus
from smsmenu.ledger.db import create_engine
from smsmenu.ledger.models import CARD_LIABILITY, cards, lines, outbox
from smsmenu.ledger.service import LedgerService
from smsmenu.settings import Settings
from smsmenu.texts import Catalogue
from tests.ledger_fixtures import truncate

PHONE = "13900000002"
FILE = (
    "number,pin,value,expires\n"
    "1000000001,123456,50,2027-01-31\n"
    "1000000002,654321,30.00,2027-01-31\n"
)


async def imported(ledger: LedgerService, text: str = FILE, batch: str = "B1") -> int:
    return await ledger.import_cards(batch, ledger.parse_cards(text))


async def refused(rule: Rule, work: object) -> Refusal:
    with pytest.raises(Refusal) as caught:
        await work  # type: ignore[misc]
    assert caught.value.rule is rule, caught.value
    return caught.value


async def test_import_books_nothing_and_show_never_has_the_pin(ledger: LedgerService) -> None:
    assert await imported(ledger) == 8000
    card = await ledger.card("1000000001")
    assert (card.batch, card.value_fen, card.expires, card.status) == (
        "B1",
        5000,
        date(2027, 1, 31),
        "issued",
    )
    async with ledger.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(lines))).scalar() == 0
        stored = (await conn.execute(select(cards))).all()
    for row in stored:
        assert "123456" not in str(tuple(row)) and "654321" not in str(tuple(row))
    stats = await ledger.card_stats("B1")
    assert (stats.issued, stats.redeemed, stats.value_fen, stats.redeemed_fen) == (2, 0, 8000, 0)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("num,pin,value,expires\n1000000001,123456,50,2027-01-31\n", 1),
        (FILE + "1000000003,12x456,50,2027-01-31\n", 4),
        (FILE + "1000000003,123456,0,2027-01-31\n", 4),
        (FILE + "1000000003,123456,50,2027-13-01\n", 4),
        (FILE + "1000000003,123456,50,2026-11-09\n", 4),  # expired already
        (FILE + "1000000001,123456,50,2027-01-31\n", 4),  # twice in the file
        (FILE + "1000000003,123456,50\n", 4),
        (FILE + "10000\r00003,123456,50,2027-01-31\n", 4),  # a lone CR ends a line
        (FILE + "1000000003," + "9" * 200_000 + ",50,2027-01-31\n", 4),  # over csv's limit
    ],
)
async def test_a_bad_row_refuses_the_whole_file_naming_its_line(
    ledger: LedgerService, text: str, line: int
) -> None:
    with pytest.raises(Refusal) as caught:
        ledger.parse_cards(text)
    assert caught.value.rule is Rule.BAD_CARD_FILE and caught.value.params["line"] == line
    assert f"第{line}行" in ledger.explain(caught.value)


async def test_a_number_already_known_refuses_the_file(ledger: LedgerService) -> None:
    await imported(ledger)
    again = (
        "number,pin,value,expires\n2000000001,111111,50,2027-01-31\n1000000002,1,50,2027-01-31\n"
    )
    with pytest.raises(Refusal):
        ledger.parse_cards(again)  # the PIN "1" is too short: fixed below
    again = again.replace(",1,50", ",1111,50")
    error = await refused(Rule.BAD_CARD_FILE, imported(ledger, again, "B2"))
    assert error.params["line"] == 3
    await refused(Rule.BATCH_UNKNOWN, ledger.card_stats("B2"))  # nothing of it was stored
    await refused(Rule.BATCH_EXISTS, imported(ledger, FILE.replace("100000000", "300000000")))


async def test_redeem_for_call_credit_extends_validity_and_sends_the_result(
    ledger: LedgerService,
) -> None:
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID, 100)
    await imported(ledger)
    view = await ledger.redeem_card(PHONE, "1000000001", "123456", None, "k1")
    assert (view.value_fen, view.credit_fen, view.balance_fen) == (5000, 5000, 5100)
    assert view.valid_until == date(2027, 2, 8)  # 50 yuan: 90 days from 2026-11-10
    assert await ledger.redeem_card(PHONE, "1000000001", "123456", None, "k1") == view
    sub = await ledger.subscriber(PHONE)
    assert sub is not None and sub.balance_fen == 5100 and sub.valid_until == date(2027, 2, 8)
    assert (await ledger.card("1000000001")).status == "redeemed"
    await refused(Rule.CARD_USED, ledger.redeem_card(PHONE, "1000000001", "123456", None, "k2"))
    async with ledger.engine.connect() as conn:
        texts = (await conn.execute(select(outbox.c.text, outbox.c.kind))).all()
        liability = (
            await conn.execute(
                select(func.sum(lines.c.amount_fen)).where(lines.c.account_id == CARD_LIABILITY)
            )
        ).scalar()
    assert liability == -5000
    assert len(texts) == 1 and texts[0].kind == "card_result"
    assert "51.00元" in texts[0].text and "2027-02-08" in texts[0].text
    assert "123456" not in texts[0].text
    stats = await ledger.card_stats()
    assert (stats.batch, stats.issued, stats.redeemed, stats.redeemed_fen) == (None, 1, 1, 5000)


async def test_redeem_for_an_item_keeps_the_rest_as_credit(ledger: LedgerService) -> None:
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID)
    await imported(ledger)
    view = await ledger.redeem_card(PHONE, "1000000001", "123456", "d500", "k1")
    assert (view.item_code, view.price_fen, view.credit_fen) == ("D500", 3000, 2000)
    sub = await ledger.subscriber(PHONE)
    assert sub is not None and sub.balance_fen == 2000
    assert [(a.code, a.data_mb, a.valid_until) for a in sub.allowances] == [
        ("D500", 500, date(2026, 12, 9))
    ]
    await refused(Rule.ITEM_UNKNOWN, ledger.redeem_card(PHONE, "1000000002", "654321", "X", "k2"))
    await refused(
        Rule.CARD_VALUE_TOO_LOW, ledger.redeem_card(PHONE, "1000000002", "654321", "P90", "k3")
    )
    assert (await ledger.card("1000000002")).status == "issued"  # refused: nothing changed


async def test_unknown_card_and_wrong_pin_read_the_same_then_lock(ledger: LedgerService) -> None:
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID)
    await imported(ledger)
    unknown = await refused(
        Rule.CARD_INVALID, ledger.redeem_card(PHONE, "1999999999", "123456", None, "k1")
    )
    wrong = await refused(
        Rule.CARD_INVALID, ledger.redeem_card(PHONE, "1000000001", "000000", None, "k2")
    )
    assert ledger.explain(unknown) == ledger.explain(wrong)
    await refused(Rule.CARD_LOCKED, ledger.redeem_card(PHONE, "1000000002", "000000", None, "k3"))
    # the phone is locked now, even with the right PIN of another card
    await refused(Rule.CARD_LOCKED, ledger.redeem_card(PHONE, "1000000002", "654321", None, "k4"))
    ledger.clock.advance(31 * 60)  # type: ignore[attr-defined]
    view = await ledger.redeem_card(PHONE, "1000000002", "654321", None, "k5")
    assert view.value_fen == 3000


async def test_a_closed_number_hears_it_is_closed_even_while_locked(ledger: LedgerService) -> None:
    """Closed is final and outranks a lock that ends (the hypothesis machine found the lock
    answered instead)."""
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID)
    await imported(ledger)
    for n in range(3):
        await refused(
            (Rule.CARD_INVALID, Rule.CARD_INVALID, Rule.CARD_LOCKED)[n],
            ledger.redeem_card(PHONE, "1000000001", "000000", None, f"w{n}"),
        )
    await ledger.close_subscriber(PHONE, "close")
    await refused(
        Rule.SUBSCRIBER_CLOSED, ledger.redeem_card(PHONE, "1000000002", "654321", None, "r")
    )


async def test_a_card_locks_after_three_wrong_pins_from_any_phones(ledger: LedgerService) -> None:
    phones = [f"1390000100{i}" for i in range(4)]
    for phone in phones:
        await ledger.add_subscriber(phone, Kind.MOBILE, Billing.PREPAID)
    await imported(ledger)
    for n, phone in enumerate(phones[:2]):
        await refused(
            Rule.CARD_INVALID, ledger.redeem_card(phone, "1000000001", "000000", None, f"w{n}")
        )
    await refused(
        Rule.CARD_LOCKED, ledger.redeem_card(phones[2], "1000000001", "000000", None, "w2")
    )
    assert (await ledger.card("1000000001")).status == "locked"
    await refused(
        Rule.CARD_LOCKED, ledger.redeem_card(phones[3], "1000000001", "123456", None, "r")
    )


async def test_expired_void_and_closed_are_refused(ledger: LedgerService, clock: FakeClock) -> None:
    await ledger.add_subscriber(PHONE, Kind.MOBILE, Billing.PREPAID)
    await imported(ledger)
    await imported(ledger, "number,pin,value,expires\n5000000001,123456,50,2026-11-10\n", "B2")
    assert await ledger.void_cards("B1") == 2
    await refused(Rule.CARD_VOID, ledger.redeem_card(PHONE, "1000000001", "123456", None, "k1"))
    assert (await ledger.card("1000000001")).status == "void"
    clock.advance(24 * 3600)
    assert (await ledger.card("5000000001")).status == "expired"
    await refused(Rule.CARD_EXPIRED, ledger.redeem_card(PHONE, "5000000001", "123456", None, "k2"))
    stats = await ledger.card_stats()
    assert (stats.void, stats.expired, stats.issued) == (2, 1, 0)
    await ledger.set_subscriber_status(PHONE, SubscriberStatus.CLOSED)
    await refused(
        Rule.SUBSCRIBER_CLOSED, ledger.redeem_card(PHONE, "5000000001", "123456", None, "k3")
    )


# ---- races on PostgreSQL ---------------------------------------------------------------------


@pytest.fixture
async def pg_workers(
    ledger_pg_url: str, clock: FakeClock, catalogue: Catalogue
) -> AsyncIterator[list[LedgerService]]:
    """Four services (as four workers) on one PostgreSQL database."""
    await truncate(ledger_pg_url)
    settings = Settings(database_url=ledger_pg_url, secret_key="s" * 32)
    engines = [create_engine(ledger_pg_url, pool_size=8) for _ in range(4)]
    services = [LedgerService(e, clock, catalogue, settings) for e in engines]
    try:
        yield services
        balance = await services[0].trial_balance()
        assert balance.ok, balance
    finally:
        for service, engine in zip(services, engines, strict=True):
            await service.aclose()
            await engine.dispose()


async def test_two_phones_racing_one_card_redeem_it_once(pg_workers: list[LedgerService]) -> None:
    first = pg_workers[0]
    phones = [f"1390000200{i}" for i in range(8)]
    for phone in phones:
        await first.add_subscriber(phone, Kind.MOBILE, Billing.PREPAID)
    await imported(first)
    for round_ in range(5):
        number = f"40000000{round_:02d}"
        await imported(first, f"number,pin,value,expires\n{number},123456,50,2027-01-31\n", number)
        results = await asyncio.gather(
            *(
                pg_workers[n % 4].redeem_card(phone, number, "123456", None, f"r{round_}-{n}")
                for n, phone in enumerate(phones)
            ),
            return_exceptions=True,
        )
        won = [r for r in results if not isinstance(r, BaseException)]
        assert len(won) == 1, results
        lost = [getattr(r, "rule", r) for r in results if r not in won]
        assert lost == [Rule.CARD_USED] * 7, lost
    balances = [await first.subscriber(p) for p in phones]
    assert sum(b.balance_fen for b in balances if b is not None) == 5 * 5000


@pytest.mark.parametrize("spread", ["one_phone", "one_card"])
async def test_thirty_concurrent_wrong_pins_get_three_verifications(
    pg_workers: list[LedgerService], spread: str
) -> None:
    first = pg_workers[0]
    phones = [f"139000030{i:02d}" for i in range(30)]
    for phone in phones:
        await first.add_subscriber(phone, Kind.MOBILE, Billing.PREPAID)
    body = "".join(f"60000000{i:02d},123456,50,2027-01-31\n" for i in range(30))
    await imported(first, "number,pin,value,expires\n" + body)

    def attempt(n: int) -> object:
        phone = phones[0] if spread == "one_phone" else phones[n]
        card = f"60000000{n:02d}" if spread == "one_phone" else "6000000000"
        return pg_workers[n % 4].redeem_card(phone, card, "999999", None, f"g{n}")

    before = sum(w.ctx.card_pins.verifies for w in pg_workers)
    results = await asyncio.gather(*(attempt(n) for n in range(30)), return_exceptions=True)
    verified = sum(w.ctx.card_pins.verifies for w in pg_workers) - before
    assert verified <= 3
    rules = [r.rule for r in results if isinstance(r, Refusal)]
    assert len(rules) == 30 and set(rules) <= {Rule.CARD_INVALID, Rule.CARD_LOCKED}
    assert rules.count(Rule.CARD_INVALID) <= 2

"""Ledger commands (SPEC §12): db, subscriber, agent, recharge, ledger check, report, outbox.

Amounts on the command line are yuan; JSON output is fen with the field names of SPEC §12.
Times are shown in the ``TIMEZONE`` setting: as local time in text, as ISO 8601 with that
zone's offset in JSON.
A refusal prints ``smsmenu: refused (<rule>): <reason>`` and exits 1; nothing moves then.
Every command opens the database of ``SMSMENU_DATABASE_URL``; the schema is created only by
``smsmenu db upgrade``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from smsmenu.cli import (
    command_settings,
    emit,
    fail,
    json_option,
    local_time,
    startup_errors,
    to_jsonable,
)
from smsmenu.cli.logs import command_logging
from smsmenu.cli.passwords import password_option, read
from smsmenu.ledger.api import (
    AgentView,
    Billing,
    Kind,
    RechargeRequest,
    RechargeView,
    Refusal,
    SubscriberStatus,
    SubscriberView,
)
from smsmenu.ledger.commands import new_key
from smsmenu.money import format_yuan, parse_yuan
from smsmenu.shapes import agent_json, recharge_json, subscriber_json

if TYPE_CHECKING:  # types only: a command imports asyncio, SQLAlchemy and the ledger as it runs
    from zoneinfo import ZoneInfo

    from sqlalchemy.ext.asyncio import AsyncEngine

    from smsmenu.ledger.service import LedgerService
    from smsmenu.settings import Settings

T = TypeVar("T")

KINDS = [k.value for k in Kind]
BILLINGS = [b.value for b in Billing]


def _zone() -> ZoneInfo:
    """The TIMEZONE setting: every time these commands print is shown in it."""
    return command_settings().zone


def run_ledger(action: Callable[[LedgerService], Awaitable[T]]) -> T:
    """Open the ledger from Settings, run ``action`` on it, close it; refusals and what stops
    a command from starting (``startup_errors``) become one line and a non-zero exit."""
    from smsmenu.app_ledger import close_ledger, open_ledger

    async def main(settings: Settings) -> T:
        ledger = await open_ledger(settings)
        try:
            return await action(ledger)
        finally:
            await close_ledger(ledger)

    return _run(main)


def run_query(query: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """``run_ledger`` for a command that only reads (``ledger.queries``, ``ledger.reports``):
    the database alone, without the ledger's writers, passwords and caches (they would double
    the start-up of a command that scripts call thousands of times)."""
    from smsmenu.app_ledger import open_database
    from smsmenu.keys import SecretKeys

    async def main(settings: Settings) -> T:
        # a deployment without its secret hears so from every command, reads included
        SecretKeys.from_settings(settings)
        engine = await open_database(settings)
        try:
            return await query(engine)
        finally:
            await engine.dispose()

    return _run(main)


def _run(main: Callable[[Settings], Awaitable[T]]) -> T:
    import asyncio

    from smsmenu.app_ledger import load_catalogue
    from smsmenu.ledger.refusals import refusal_text

    settings = command_settings()
    command_logging(settings)

    async def refusing() -> T:
        try:
            return await main(settings)
        except Refusal as refusal:
            text = refusal_text(load_catalogue(settings), refusal, settings.zone)
            fail(f"refused ({refusal.rule.value}): {text}")

    with startup_errors(settings):
        return asyncio.run(refusing())


def yuan(text: str, what: str = "amount") -> int:
    """Yuan typed on the command line (two decimals at most, may be negative) in fen."""
    negative = text.strip().startswith("-")
    fen = parse_yuan(text.strip().removeprefix("-"))
    if fen is None:
        fail(f"bad {what} {text!r}: yuan, e.g. 50 or 12.50")
    return -fen if negative else fen


def _day(text: str | None, what: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"bad {what} {text!r}: a date as YYYY-MM-DD")


def _key(key: str | None, operation: str) -> str:
    return key or new_key(f"cli-{operation}")


# ---- output shapes (SPEC §12) -------------------------------------------------------------


def agent_text(view: AgentView) -> str:
    return (
        f"agent {view.agent_id}  phone {view.phone}  {view.status.value}  "
        f"float {format_yuan(view.balance_fen)}  commission {view.commission_bp} bp"
    )


def subscriber_text(view: SubscriberView) -> str:
    valid = f"  valid until {view.valid_until}" if view.valid_until else ""
    held = "".join(
        f"  {a.code} {a.data_mb}MB" if a.data_mb else f"  {a.code}" for a in view.allowances
    )
    return (
        f"{view.number}  {view.kind.value}  {view.billing.value}  {view.status.value}  "
        f"balance {format_yuan(view.balance_fen)}{valid}{held}"
    )


def recharge_text(view: RechargeView, zone: ZoneInfo) -> str:
    return (
        f"tx {view.tx_id}  {local_time(view.created_at, zone)}  "
        f"{view.kind.value} {view.number}  amount {format_yuan(view.amount_fen)}  "
        f"commission {format_yuan(view.commission_fen)}  debit {format_yuan(view.debit_fen)}  "
        f"{view.status.value}"
    )


# ---- db -----------------------------------------------------------------------------------


@click.group()
def db() -> None:
    """The ledger's database schema."""


@db.command("upgrade")
@json_option
def db_upgrade(as_json: bool) -> None:
    """Create or upgrade the schema (Alembic migrations)."""
    import asyncio

    from smsmenu.ledger.db import create_engine, upgrade

    database_url = command_settings().database_url

    async def main() -> None:
        engine = create_engine(database_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())
    emit(as_json, {"upgraded": True}, lambda _: "schema is up to date")


# ---- subscriber ---------------------------------------------------------------------------


@click.group()
def subscriber() -> None:
    """Subscriber accounts."""


@subscriber.command("add")
@click.option("--number", required=True)
@click.option("--kind", required=True, type=click.Choice(KINDS))
@click.option("--billing", required=True, type=click.Choice(BILLINGS))
@click.option("--balance", "balance", default="0", help="Opening balance in yuan (may be < 0).")
@json_option
def subscriber_add(number: str, kind: str, billing: str, balance: str, as_json: bool) -> None:
    """Register a subscriber account."""
    fen = yuan(balance, "balance")
    view = run_ledger(
        lambda ledger: ledger.add_subscriber(number, Kind(kind), Billing(billing), fen)
    )
    emit(as_json, subscriber_json(view), lambda v: subscriber_text(view))


@subscriber.command("show")
@click.option("--number", required=True)
@json_option
def subscriber_show(number: str, as_json: bool) -> None:
    """One subscriber account."""
    from smsmenu.ledger import queries

    today = datetime.now(_zone()).date()  # the allowances still held (SPEC §8)
    view = run_query(lambda engine: queries.subscriber(engine, number, today))
    if view is None:
        fail(f"no subscriber {number}")
    emit(as_json, subscriber_json(view, held=True), lambda v: subscriber_text(view))


@subscriber.command("set-status")
@click.option("--number", required=True)
@click.option("--status", required=True, type=click.Choice([s.value for s in SubscriberStatus]))
@json_option
def subscriber_set_status(number: str, status: str, as_json: bool) -> None:
    """Suspend (停机), reactivate or close a subscriber account. Closing is final: a closed
    number's status cannot change again (refused: subscriber_closed)."""
    view = run_ledger(lambda ledger: ledger.set_subscriber_status(number, SubscriberStatus(status)))
    emit(as_json, subscriber_json(view), lambda v: subscriber_text(view))


@subscriber.command("close")
@click.option("--number", required=True)
@click.option("--key", default=None, help="Idempotency key (generated if absent).")
@json_option
def subscriber_close(number: str, key: str | None, as_json: bool) -> None:
    """销户 at the counter (identity checked in person): refused while anything is owed or
    while the number is an agent's bound phone; a prepaid remainder is booked for refund."""

    async def action(ledger: LedgerService) -> dict[str, Any]:
        closed = await ledger.close_subscriber(number, _key(key, "subscriber-close"))
        view = await ledger.subscriber(number)
        assert view is not None
        return {**subscriber_json(view, held=True), "refund_fen": closed.refund_fen}

    value = run_ledger(action)
    emit(as_json, value, lambda v: f"{number} closed, {format_yuan(v['refund_fen'])} to refund")


# ---- agent --------------------------------------------------------------------------------


@click.group()
def agent() -> None:
    """Agents (代办户) and their float accounts."""


@agent.command("open")
@click.option("--phone", required=True, help="The bound phone: an active mobile subscriber.")
@password_option("--trade-pin", help="6-digit trade password.")
@password_option("--mgmt-pin", help="6-digit management password.")
@click.option("--deposit", required=True, help="First deposit in yuan (at least 500).")
@click.option("--commission-bp", type=int, default=None, help="Commission rate, basis points.")
@click.option("--key", default=None, help="Idempotency key (generated if absent).")
@json_option
def agent_open(
    phone: str,
    trade_pin: str | None,
    mgmt_pin: str | None,
    deposit: str,
    commission_bp: int | None,
    key: str | None,
    as_json: bool,
) -> None:
    """Open an agent.

    With ``--trade-pin - --mgmt-pin -`` stdin holds two lines: the trade password, then the
    management password."""
    fen = yuan(deposit, "deposit")
    trade_pin, mgmt_pin = read(
        ("--trade-pin", "Trade password", trade_pin),
        ("--mgmt-pin", "Management password", mgmt_pin),
        confirm=True,
    )
    view = run_ledger(
        lambda ledger: ledger.open_agent(
            phone, trade_pin, mgmt_pin, fen, commission_bp, _key(key, "open")
        )
    )
    emit(as_json, agent_json(view), lambda v: agent_text(view))


@agent.command("show")
@click.option("--agent", "agent_id", required=True, type=int)
@json_option
def agent_show(agent_id: int, as_json: bool) -> None:
    """One agent."""
    from smsmenu.ledger import queries

    view = run_query(lambda engine: queries.agent(engine, agent_id))
    emit(as_json, agent_json(view), lambda v: agent_text(view))


@agent.command("deposit")
@click.option("--agent", "agent_id", required=True, type=int)
@click.option("--amount", required=True, help="Yuan, a multiple of 10.")
@click.option("--key", default=None, help="Idempotency key (generated if absent).")
@json_option
def agent_deposit(agent_id: int, amount: str, key: str | None, as_json: bool) -> None:
    """续存: deposit into the agent's float."""
    fen = yuan(amount)

    async def action(ledger: LedgerService) -> AgentView:
        await ledger.deposit(agent_id, fen, _key(key, "deposit"))
        return await ledger.agent(agent_id)

    view = run_ledger(action)
    emit(as_json, agent_json(view), lambda v: agent_text(view))


@agent.command("close")
@click.option("--agent", "agent_id", required=True, type=int)
@click.option("--key", default=None, help="Idempotency key (generated if absent).")
@json_option
def agent_close(agent_id: int, key: str | None, as_json: bool) -> None:
    """销户: close an agent whose float is below 10 yuan (the rest is paid out in cash)."""

    async def action(ledger: LedgerService) -> dict[str, Any]:
        closed = await ledger.close_agent(agent_id, _key(key, "close"))
        return {**agent_json(await ledger.agent(agent_id)), "paid_out_fen": closed.paid_out_fen}

    value = run_ledger(action)
    emit(
        as_json,
        value,
        lambda v: f"agent {agent_id} closed, paid out {format_yuan(v['paid_out_fen'])} in cash",
    )


def _agent_status_command(name: str, doc: str, method: str) -> None:
    @agent.command(name, help=doc)
    @click.option("--agent", "agent_id", required=True, type=int)
    @json_option
    def command(agent_id: int, as_json: bool) -> None:
        view = run_ledger(lambda ledger: getattr(ledger, method)(agent_id))
        emit(as_json, agent_json(view), lambda v: agent_text(view))


_agent_status_command("suspend", "Suspend an agent (no recharges).", "suspend_agent")
_agent_status_command("resume", "Resume a suspended agent.", "resume_agent")


@agent.command("change-phone")
@click.option("--agent", "agent_id", required=True, type=int)
@click.option("--phone", required=True)
@json_option
def agent_change_phone(agent_id: int, phone: str, as_json: bool) -> None:
    """Bind the agent to another phone."""
    view = run_ledger(lambda ledger: ledger.change_phone(agent_id, phone))
    emit(as_json, agent_json(view), lambda v: agent_text(view))


# ---- recharge -----------------------------------------------------------------------------


@click.group()
def recharge() -> None:
    """Recharges (空中充值)."""


@recharge.command("make")
@click.option("--agent", "agent_id", required=True, type=int)
@click.option("--kind", required=True, type=click.Choice(KINDS))
@click.option("--number", required=True)
@click.option("--amount", required=True, help="Whole yuan: 10 to 1000, a multiple of 10.")
@password_option("--pin", help="The agent's trade password.")
@click.option(
    "--notify",
    default=None,
    help="Who gets a fixed line's or broadband's receipt: a mobile number or a PHS subscriber.",
)
@click.option("--key", default=None, help="Idempotency key (generated if absent).")
@json_option
def recharge_make(
    agent_id: int,
    kind: str,
    number: str,
    amount: str,
    pin: str | None,
    notify: str | None,
    key: str | None,
    as_json: bool,
) -> None:
    """Recharge a subscriber from an agent's float."""
    fen = yuan(amount)
    (pin,) = read(("--pin", "Trade password", pin))
    request = RechargeRequest(agent_id, Kind(kind), number, fen, pin, _key(key, "recharge"), notify)
    view = run_ledger(lambda ledger: ledger.recharge(request))
    zone = _zone()
    emit(as_json, recharge_json(view, zone), lambda v: recharge_text(view, zone))


@recharge.command("list")
@click.option("--agent", "agent_id", required=True, type=int)
@click.option("--from", "start", default=None, help="First business day, YYYY-MM-DD.")
@click.option("--to", "end", default=None, help="Last business day (inclusive), YYYY-MM-DD.")
@json_option
def recharge_list(agent_id: int, start: str | None, end: str | None, as_json: bool) -> None:
    """An agent's recharges, newest first."""
    first, last = _day(start, "--from"), _day(end, "--to")

    async def action(ledger: LedgerService) -> list[RechargeView]:
        await ledger.agent(agent_id)
        lower = ledger.day_bounds(first)[0] if first else None
        upper = ledger.day_bounds(last)[1] if last else None
        return await ledger.recharges(agent_id, lower, upper)

    views = run_ledger(action)
    zone = _zone()
    emit(
        as_json,
        [recharge_json(v, zone) for v in views],
        lambda _: "\n".join(recharge_text(v, zone) for v in views) or "no recharges",
    )


@recharge.command("reverse")
@click.option("--tx", "tx_id", required=True, type=int)
@click.option("--key", default=None, help="Idempotency key (generated if absent).")
@json_option
def recharge_reverse(tx_id: int, key: str | None, as_json: bool) -> None:
    """返销: reverse a recharge (SPEC §7 rules)."""
    view = run_ledger(lambda ledger: ledger.reverse(tx_id, _key(key, "reverse")))
    emit(
        as_json,
        view,
        lambda v: (
            f"recharge {tx_id} reversed (tx {view.tx_id}): {format_yuan(view.amount_fen)} taken "
            f"back from {view.number}, {format_yuan(view.debit_fen)} back to agent "
            f"{view.agent_id}"
        ),
        _zone(),
    )


@recharge.command("retry")
@click.option("--agent", "agent_id", required=True, type=int)
@click.option("--tx", "tx_id", required=True, type=int)
@password_option("--pin", help="The agent's trade password.")
@click.option("--key", default=None, help="Idempotency key (generated if absent).")
@json_option
def recharge_retry(
    agent_id: int, tx_id: int, pin: str | None, key: str | None, as_json: bool
) -> None:
    """重复充值: run a failed recharge of the retry list again."""
    (pin,) = read(("--pin", "Trade password", pin))
    view = run_ledger(lambda ledger: ledger.retry(agent_id, tx_id, pin, _key(key, "retry")))
    zone = _zone()
    emit(as_json, recharge_json(view, zone), lambda v: recharge_text(view, zone))


@recharge.command("retry-list")
@click.option("--agent", "agent_id", required=True, type=int)
@json_option
def recharge_retry_list(agent_id: int, as_json: bool) -> None:
    """The agent's retry list (failed in the last 24 hours, not since succeeded)."""
    views = run_ledger(lambda ledger: ledger.retry_list(agent_id))
    zone = _zone()
    emit(
        as_json,
        [recharge_json(v, zone) for v in views],
        lambda _: "\n".join(recharge_text(v, zone) for v in views) or "nothing to retry",
    )


@recharge.command("invoice")
@click.option("--tx", "tx_id", required=True, type=int)
@json_option
def recharge_invoice(tx_id: int, as_json: bool) -> None:
    """Mark the invoice of a recharge printed (it can no longer be reversed)."""
    view = run_ledger(lambda ledger: ledger.mark_invoice_printed(tx_id))
    emit(as_json, recharge_json(view, _zone()), lambda v: f"invoice printed for recharge {tx_id}")


@recharge.command("recover")
@click.option("--older-than", "older_than_s", type=float, default=60.0, show_default=True)
@json_option
def recharge_recover(older_than_s: float, as_json: bool) -> None:
    """Resolve reservations left pending by a crash (post or void)."""
    views = run_ledger(lambda ledger: ledger.recover_pending(older_than_s))
    zone = _zone()
    emit(
        as_json,
        [recharge_json(v, zone) for v in views],
        lambda _: f"resolved {len(views)} pending recharge(s)",
    )


# ---- ledger, report, outbox ---------------------------------------------------------------


@click.group("ledger")
def ledger_group() -> None:
    """The books."""


@ledger_group.command("check")
@json_option
def ledger_check(as_json: bool) -> None:
    """Trial balance: every account adds up to zero; exits 1 if not."""
    from smsmenu.ledger import reports

    balance = run_query(reports.trial_balance)
    value = {
        "ok": balance.ok,
        "total_fen": balance.total_fen,
        "system_fen": balance.system_fen,
        "floats_fen": balance.floats_fen,
        "subscribers_fen": balance.subscribers_fen,
        "mismatched_accounts": balance.mismatched_accounts,
        "pending_mismatch": balance.pending_mismatch,
    }
    if not balance.ok:
        fail(f"trial balance is off: {value}")
    emit(
        as_json,
        value,
        lambda v: (
            f"trial balance zero: floats {format_yuan(balance.floats_fen)}, subscribers "
            f"{format_yuan(balance.subscribers_fen)}, "
            + ", ".join(f"{k} {format_yuan(n)}" for k, n in balance.system_fen.items())
        ),
    )


@click.group()
def report() -> None:
    """Reports."""


@report.command("daily")
@click.option("--date", "day", default=None, help="Business day YYYY-MM-DD (default today).")
@json_option
def report_daily(day: str | None, as_json: bool) -> None:
    """Per agent for one business day (in TIMEZONE): recharges, net commission, reversals.

    \b
    recharges, recharged_fen  recharges that succeeded that day (reversed ones
                              too) and their sum
    commission_fen            net commission: on that day's recharges, less what
                              that day's reversals clawed back (negative when a
                              reversal after midnight claws back more)
    reversals, reversed_fen   reversals done that day and the amounts they took
                              back from the targets
    reversed_commission_fen   the commission those reversals clawed back

    The text ends with the subscriber accounts closed that day and the refunds they are owed
    (``report refunds --json`` for those as JSON).
    """
    wanted = _day(day, "--date")

    async def action(ledger: LedgerService) -> Any:
        which = wanted or ledger.today()
        return await ledger.daily_report(which), await ledger.refunds(which)

    rows, refunds = run_ledger(action)
    lines = [
        f"{r.day} agent {r.agent_id}: {r.recharges} recharges "
        f"{format_yuan(r.recharged_fen)}, net commission {format_yuan(r.commission_fen)}, "
        f"{r.reversals} reversals {format_yuan(r.reversed_fen)} (commission clawed back "
        f"{format_yuan(r.reversed_commission_fen)})"
        for r in rows
    ]
    if refunds:
        owed = sum(r.amount_fen for r in refunds)
        lines.append(f"closed accounts (销户): {len(refunds)}, refunds owed {format_yuan(owed)}")
    emit(
        as_json,
        [{**to_jsonable(r), "day": r.day.isoformat()} for r in rows],
        lambda _: "\n".join(lines) or "no activity",
    )


@report.command("refunds")
@click.option("--date", "day", default=None, help="Business day YYYY-MM-DD (default today).")
@json_option
def report_refunds(day: str | None, as_json: bool) -> None:
    """Subscriber accounts closed (销户) on one business day and the refund each is owed."""
    wanted = _day(day, "--date")
    zone = _zone()

    async def action(ledger: LedgerService) -> Any:
        return await ledger.refunds(wanted or ledger.today())

    rows = run_ledger(action)
    emit(
        as_json,
        [
            {
                "tx_id": r.tx_id,
                "number": r.number,
                "refund_fen": r.amount_fen,
                "closed_at": r.created_at.astimezone(zone).isoformat(),
            }
            for r in rows
        ],
        lambda _: (
            "\n".join(
                f"{local_time(r.created_at, zone)} {r.number} refund {format_yuan(r.amount_fen)}"
                for r in rows
            )
            or "no accounts closed"
        ),
    )


@report.command("records")
@click.option("--agent", "agent_id", required=True, type=int)
@click.option("--from", "start", default=None, help="First business day, YYYY-MM-DD.")
@click.option("--to", "end", default=None, help="Last business day (inclusive), YYYY-MM-DD.")
@json_option
def report_records(agent_id: int, start: str | None, end: str | None, as_json: bool) -> None:
    """An agent's transaction records (recharges, deposits, transfers, reversals)."""
    first, last = _day(start, "--from"), _day(end, "--to")

    async def action(ledger: LedgerService) -> Any:
        await ledger.agent(agent_id)
        lower = ledger.day_bounds(first)[0] if first else None
        upper = ledger.day_bounds(last)[1] if last else None
        return await ledger.records(agent_id, lower, upper)

    rows = run_ledger(action)
    zone = _zone()
    emit(
        as_json,
        rows,
        lambda _: (
            "\n".join(
                f"{local_time(r.created_at, zone)}  {r.kind}  {r.number or '-'}  "
                f"{format_yuan(r.amount_fen)}  tx {r.tx_id}"
                for r in rows
            )
            or "no records"
        ),
        zone,
    )


@click.group("outbox")
def outbox_group() -> None:
    """Texts waiting in (or sent from) the outbox."""


@outbox_group.command("list")
@click.option("--destination", default=None)
@json_option
def outbox_list(destination: str | None, as_json: bool) -> None:
    """Outbox rows, oldest first."""
    from smsmenu.ledger.outbox import Outbox, for_people

    async def action(ledger: LedgerService) -> Any:
        rows = await Outbox(ledger.engine, ledger.clock).rows(destination=destination)
        return [for_people(row) for row in rows]

    rows = run_ledger(action)
    emit(
        as_json,
        rows,
        lambda _: (
            "\n".join(f"{m.id} {m.status} {m.kind} -> {m.destination}: {m.text}" for m in rows)
            or "outbox empty"
        ),
        _zone(),
    )


@click.group("deadletter")
def deadletter_group() -> None:
    """Messages that could not be handled (SPEC §11)."""


@deadletter_group.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@json_option
def deadletter_list(limit: int, as_json: bool) -> None:
    """The newest dead letters, newest first: each was answered "try later" and acknowledged
    after it failed too often; digits in its text are masked (it may hold a password)."""
    from smsmenu.ledger.deadletters import DeadLetters

    async def action(ledger: LedgerService) -> Any:
        return await DeadLetters(ledger.engine).rows(limit)

    letters = run_ledger(action)
    zone = _zone()

    def human(_: Any) -> str:
        return (
            "\n".join(
                f"{local_time(d.created_at, zone)} {d.source} -> {d.destination}"
                f" ({d.transport}, {d.attempts} attempts) {d.text!r}: {d.error}"
                for d in letters
            )
            or "no dead letters"
        )

    emit(as_json, letters, human, zone)

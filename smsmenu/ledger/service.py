"""The ledger's service layer: what the menus, the CLI and the web call (a thin façade).

Theory of operation
-------------------
Every operation is one unit of work (``unit_of_work``: one transaction that rolls back unless
committed) that stores its idempotency key before anything moves; a repeat gets the first
result. Balances of floats and subscriber accounts live in their rows and change only by
guarded ``UPDATE``s in the same transaction as their journal lines and outbox rows. A refusal
inside a unit of work rolls everything back; a password attempt is counted before it is
checked, by a guarded write of its own (``passwords``). Recharges are two-phase (TigerBeetle's
pending → post | void); with the internal billing backend the three phases are one transaction.

The modules beside this one do the work, one job each:

* ``admission``     everything a recharge checks before money moves (the one source of rules)
* ``recharge``      the one path of every recharge, its quote and its retry
* ``recharge_plan`` what one recharge writes, computed once (pure)
* ``writer``, ``writer_sqlite``, ``writer_pg``: the recharge writer of each database
* ``agent_cache``   a worker's copy of agents' rows, kept current by the database's notices
* ``two_phase``     external billing: reserve, credit, post or void; recovery after a crash
* ``operator_functions`` subscribers and an agent's life (open, deposit, suspend, phone, close)
* ``transfer``      float to the bound phone
* ``cards``, ``sales``, ``closing``, ``holdings``: recharge cards, add-ons sold by agents,
  销户 of a subscriber, prepaid validity and allowances (SPEC §8)
* ``reversal``      返销 and invoices
* ``passwords``     trade and management passwords in use: attempts counted, lock-out
* ``account``       balance and records behind the password, password changes, web login
* ``queries``, ``reports``, ``views``, ``notices``, ``entries``, ``statements``: reads,
  reports, row → view mapping, outbox texts, journal rows, SQL built once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from smsmenu.clock import Clock
from smsmenu.keys import SecretKeys
from smsmenu.ledger import (
    account,
    admission,
    cards,
    closing,
    commands,
    operator_functions,
    queries,
    recharge,
    reports,
    reversal,
    sales,
    transfer,
    two_phase,
)
from smsmenu.ledger.agent_cache import AgentCache
from smsmenu.ledger.api import (
    AgentStatus,
    AgentView,
    Billing,
    CardStats,
    CardView,
    ClosedView,
    CloseView,
    DailyReportRow,
    DepositView,
    Kind,
    Quote,
    RechargeRequest,
    RechargeView,
    RecordView,
    RedeemView,
    Refusal,
    ReversalView,
    SaleView,
    SubscriberStatus,
    SubscriberView,
    TransferView,
    TrialBalance,
)
from smsmenu.ledger.billing import BillingBackend, InternalBilling
from smsmenu.ledger.context import Faults, LedgerContext
from smsmenu.ledger.pins import PinVault
from smsmenu.ledger.products import Products, load_products
from smsmenu.ledger.refusals import refusal_text
from smsmenu.ledger.writer import RechargeWriter
from smsmenu.messages import Route
from smsmenu.settings import Settings, config_dir
from smsmenu.texts import Catalogue

if TYPE_CHECKING:
    from smsmenu.ledger.writer_sqlite import SqliteWriter

money_log = logging.getLogger("smsmenu.money")
#: Commands whose notices the recharge writer hands to the sender at commit; every other one
#: queues its notices for the sender's claim loop.
_HANDED = (commands.Recharge, commands.Retry)


class LedgerService:
    """The ledger: implements ``api.AgentLedger`` and the operator's functions (SPEC §7).

    Build it with ``LedgerService(engine, clock, catalogue, settings)`` (internal billing, the
    keys of ``SecretKeys.from_settings``, password hashes peppered with their ``pin-pepper``)
    or pass an external ``billing`` backend; ``smsmenu.app.open_ledger`` does it from
    Settings. A long-running worker on PostgreSQL passes an ``agent_cache`` (and has it listen
    for changes, ``AgentCache.listen``). Close it with ``aclose`` (then dispose the engine).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        catalogue: Catalogue,
        settings: Settings,
        billing: BillingBackend | None = None,
        *,
        pins: PinVault | None = None,
        keys: SecretKeys | None = None,
        faults: Faults | None = None,
        billing_timeout_s: float = 10.0,
        agent_cache: AgentCache | None = None,
        products: Products | None = None,
    ) -> None:
        keys = keys or SecretKeys.from_settings(settings)
        self.ctx = LedgerContext(
            engine,
            clock,
            catalogue,
            settings,
            keys,
            pins or PinVault(keys.derive("pin-pepper")),
            billing or InternalBilling(),
            faults,
            billing_timeout_s,
            products=products or load_products(config_dir()),
        )
        self.ctx.writer = _writer(self.ctx, agent_cache)
        ctx = self.ctx
        self._handlers: dict[type, Callable[[Any], Awaitable[Any]]] = {
            commands.Recharge: lambda c: recharge.run(ctx, c, admission.fingerprint(c)),
            commands.Retry: lambda c: recharge.retry(
                ctx, c.agent_id, c.tx_id, c.pin, c.key, c.reply_route
            ),
            commands.Transfer: lambda c: transfer.transfer_to_phone(
                ctx, c.agent_id, c.amount_fen, c.pin, c.key, c.reply_route
            ),
            commands.Deposit: lambda c: operator_functions.deposit(
                ctx, c.agent_id, c.amount_fen, c.key
            ),
            commands.OpenAgent: lambda c: operator_functions.open_agent(
                ctx, c.phone, c.trade_pin, c.mgmt_pin, c.deposit_fen, c.commission_bp, c.key
            ),
            commands.CloseAgent: lambda c: operator_functions.close_agent(ctx, c.agent_id, c.key),
            commands.Reverse: lambda c: reversal.reverse(ctx, c.tx_id, c.key),
            commands.RedeemCard: lambda c: cards.redeem(
                ctx, c.phone, c.card_number, c.pin, c.item_code, c.key, c.reply_route
            ),
            commands.SellItem: lambda c: sales.sell(
                ctx, c.agent_id, c.number, c.item_code, c.pin, c.key, c.reply_route
            ),
            commands.CloseSubscriber: lambda c: closing.close(
                ctx, c.number, c.key, c.code, c.reply_route
            ),
        }

    async def execute(self, command: commands.Command) -> Any:
        """Run a money operation through its one handler, with the one log line every money
        operation gets (``commands``): what was asked, and its outcome or refusal."""
        asked = commands.describe(command)
        try:
            result = await self._handlers[type(command)](command)
        except Refusal as refusal:
            money_log.info("money %s refused=%s", asked, refusal.rule.value)
            raise
        except Exception as exc:
            money_log.error("money %s error=%s", asked, type(exc).__name__)
            raise
        money_log.info("money %s %s", asked, commands.outcome(result))
        if not isinstance(command, _HANDED):
            self.ctx.queued()
        return result

    async def aclose(self) -> None:
        """Close the writer (its connection, its thread, its agent cache); the engine is the
        caller's."""
        await self.ctx.writer.aclose()

    # ---- what the parts share (tests swap billing and faults on a running service) ------------

    @property
    def engine(self) -> AsyncEngine:
        return self.ctx.engine

    @property
    def local_writer(self) -> SqliteWriter | None:
        """The embedded database's writer (None on PostgreSQL): the process's other frequent
        writes go through its connection too (``SqliteWriter.run``)."""
        return None if self.ctx.postgres else self.ctx.writer  # type: ignore[return-value]

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def catalogue(self) -> Catalogue:
        return self.ctx.catalogue

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def zone(self) -> Any:
        return self.ctx.zone

    @property
    def pins(self) -> PinVault:
        return self.ctx.pins

    @property
    def billing(self) -> BillingBackend:
        return self.ctx.billing

    @billing.setter
    def billing(self, billing: BillingBackend) -> None:
        self.ctx.billing = billing

    @property
    def faults(self) -> Faults | None:
        return self.ctx.faults

    @faults.setter
    def faults(self, faults: Faults | None) -> None:
        self.ctx.faults = faults

    @property
    def billing_timeout_s(self) -> float:
        return self.ctx.billing_timeout_s

    def explain(self, refusal: Refusal) -> str:
        """The refusal as the text a person reads (SMS, CLI)."""
        return refusal_text(self.ctx.catalogue, refusal, self.ctx.zone)

    # ---- reads -------------------------------------------------------------------------------

    async def agent(self, agent_id: int) -> AgentView:
        return await queries.agent(self.engine, agent_id)

    async def agent_for_phone(self, phone: str) -> AgentView | None:
        """The agent bound to ``phone``, unless closed."""
        return await queries.agent_for_phone(self.engine, phone)

    async def subscriber(self, number: str) -> SubscriberView | None:
        """The subscriber, with its validity (prepaid) and the allowances it holds today."""
        return await queries.subscriber(self.engine, number, self.today())

    async def recharge_view(self, tx_id: int) -> RechargeView:
        return await queries.recharge(self.engine, tx_id)

    async def recharges(
        self,
        agent_id: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        number: str | None = None,
    ) -> list[RechargeView]:
        """Recharges newest first, optionally of one agent / target, in [start, end)."""
        return await queries.recharge_list(self.engine, agent_id, start, end, number)

    async def subscriber_topups(self, number: str, limit: int = 5) -> list[RecordView]:
        """The last recharges into ``number`` that took effect, newest first."""
        return await queries.subscriber_topups(self.engine, number, limit)

    async def agent_id_for_phone(self, phone: str) -> int | None:
        """The id of the agent bound to ``phone`` (not closed), if any: what every message
        asks, so a worker on PostgreSQL answers it from its ``AgentCache``."""
        return await self.ctx.writer.agent_id_for_phone(phone)

    # ---- operator ------------------------------------------------------------------------------

    async def add_subscriber(
        self,
        number: str,
        kind: Kind,
        billing: Billing,
        balance_fen: int = 0,
        status: SubscriberStatus = SubscriberStatus.ACTIVE,
    ) -> SubscriberView:
        """Register a subscriber account; an opening balance is booked against ``billing``."""
        return await operator_functions.add_subscriber(
            self.ctx, number, kind, billing, balance_fen, status
        )

    async def set_subscriber_status(self, number: str, status: SubscriberStatus) -> SubscriberView:
        """Suspend (停机), reactivate or close a subscriber account (billing's decision);
        closing is final (SUBSCRIBER_CLOSED)."""
        return await operator_functions.set_subscriber_status(self.ctx, number, status)

    async def open_agent(
        self,
        phone: str,
        trade_pin: str,
        mgmt_pin: str,
        deposit_fen: int,
        commission_bp: int | None = None,
        key: str | None = None,
    ) -> AgentView:
        """Open an agent on an active mobile ``phone`` with a first deposit of ≥ 500 yuan."""
        view: AgentView = await self.execute(
            commands.OpenAgent(
                phone,
                trade_pin,
                mgmt_pin,
                deposit_fen,
                commission_bp,
                key or commands.new_key("open"),
            )
        )
        return view

    async def deposit(self, agent_id: int, amount_fen: int, key: str) -> DepositView:
        """续存: a multiple of 10 yuan, at least 10; cash in, float up."""
        view: DepositView = await self.execute(commands.Deposit(agent_id, amount_fen, key))
        return view

    async def suspend_agent(self, agent_id: int) -> AgentView:
        return await operator_functions.set_agent_status(self.ctx, agent_id, AgentStatus.SUSPENDED)

    async def resume_agent(self, agent_id: int) -> AgentView:
        return await operator_functions.set_agent_status(self.ctx, agent_id, AgentStatus.ACTIVE)

    async def change_phone(self, agent_id: int, phone: str) -> AgentView:
        """Bind the agent to another phone: an active mobile subscriber bound to nobody."""
        return await operator_functions.change_phone(self.ctx, agent_id, phone)

    async def close_agent(self, agent_id: int, key: str) -> CloseView:
        """销户: only below 10 yuan; the remainder is paid out in cash; the phone is freed."""
        view: CloseView = await self.execute(commands.CloseAgent(agent_id, key))
        return view

    # ---- recharge ------------------------------------------------------------------------------

    async def quote(
        self, agent_id: int, kind: Kind, number: str, amount_fen: int, notify: str | None
    ) -> Quote:
        """Check everything a recharge checks except the password, and price it."""
        return await recharge.quote(self.ctx, agent_id, kind, number, amount_fen, notify)

    async def recharge(self, request: RechargeRequest) -> RechargeView:
        """Reserve, credit through billing, post (or void: status ``failed``). Writes the
        agent's result notice and the target's receipt to the outbox in the same transaction."""
        view: RechargeView = await self.execute(request)
        return view

    async def recover_pending(self, older_than_s: float = 60.0) -> list[RechargeView]:
        """Resolve reservations left pending (by a crash) for at least ``older_than_s``:
        post those the billing backend credited, void the rest. Run it on start-up."""
        return await two_phase.recover_pending(self.ctx, older_than_s)

    async def retry_list(self, agent_id: int) -> list[RechargeView]:
        """Failed recharges of the last 24 hours not since succeeded, newest first (one per
        target and amount)."""
        return await recharge.retry_list(self.ctx, agent_id)

    async def retry(
        self, agent_id: int, tx_id: int, pin: str, key: str, reply_route: Route | None = None
    ) -> RechargeView:
        """Run a failed recharge of the retry list again, as a new recharge."""
        view: RechargeView = await self.execute(
            commands.Retry(agent_id, tx_id, pin, key, reply_route)
        )
        return view

    # ---- the agent's own account -----------------------------------------------------------------

    async def balance(self, agent_id: int, pin: str) -> int:
        """The float's available balance in fen."""
        agent = await account.trade_login(self.ctx, agent_id, pin)
        return int(agent.balance - agent.pending)

    async def recent(self, agent_id: int, pin: str, limit: int = 5) -> list[RecordView]:
        """交易记录: the last recharges, deposits, transfers and reversals, newest first."""
        await account.trade_login(self.ctx, agent_id, pin)
        return await reports.records(self.engine, agent_id, limit=limit)

    async def transfer_to_phone(
        self, agent_id: int, amount_fen: int, pin: str, key: str, reply_route: Route | None = None
    ) -> TransferView:
        """Move float to the bound phone's own account (no commission, recharge amounts)."""
        view: TransferView = await self.execute(
            commands.Transfer(agent_id, amount_fen, pin, key, reply_route)
        )
        return view

    async def sell_item(
        self,
        agent_id: int,
        number: str,
        item_code: str,
        pin: str,
        key: str,
        reply_route: Route | None = None,
    ) -> SaleView:
        """Sell a data pack or plan to ``number`` from the float (``CZ 5``), commission as for
        a recharge."""
        view: SaleView = await self.execute(
            commands.SellItem(agent_id, number, item_code, pin, key, reply_route)
        )
        return view

    async def change_trade_pin(self, agent_id: int, old: str, new: str) -> None:
        """New trade password: 6 digits, not the old one, not 6 equal digits, not a run."""
        await account.change_pin(self.ctx, agent_id, old, new, trade=True)

    async def change_mgmt_pin(self, agent_id: int, old: str, new: str) -> None:
        """New management password, same rules; a wrong old one counts towards the management
        lock (WRONG_MGMT_PIN, MGMT_PIN_LOCKED)."""
        await account.change_pin(self.ctx, agent_id, old, new, trade=False)

    async def verify_mgmt_pin(self, agent_id: int, pin: str) -> bool:
        """For the web login: whether ``pin`` is the agent's management password. A wrong one
        is counted; while locked it raises ``Refusal(MGMT_PIN_LOCKED, until=...)``."""
        return await account.verify_mgmt_pin(self.ctx, agent_id, pin)

    async def mgmt_lock(self, agent_id: int) -> datetime | None:
        """Until when the agent's management operations are locked (SPEC §10), or None."""
        return await account.mgmt_lock(self.ctx, agent_id)

    # ---- reversal, invoices --------------------------------------------------------------------

    async def mark_invoice_printed(self, tx_id: int) -> RechargeView:
        """An invoice was printed for recharge ``tx_id``: it can no longer be reversed."""
        return await reversal.mark_invoice_printed(self.ctx, tx_id)

    async def reverse(self, tx_id: int, key: str) -> ReversalView:
        """返销: the exact inverse of recharge ``tx_id`` if every rule of SPEC §7 allows it."""
        view: ReversalView = await self.execute(commands.Reverse(tx_id, key))
        return view

    # ---- recharge cards, add-ons, closing a subscriber account (SPEC §8) -----------------------

    @property
    def products(self) -> Products:
        return self.ctx.products

    def parse_cards(self, text: str) -> list[cards.CardRow]:
        """The checked rows of a card batch file; BAD_CARD_FILE naming the line."""
        return cards.parse_file(self.ctx, text)

    async def import_cards(
        self,
        batch: str,
        rows: list[cards.CardRow],
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """A new batch of cards (no journal line): its face value in fen."""
        return await cards.import_batch(self.ctx, batch, rows, progress)

    async def card(self, number: str) -> CardView:
        return await cards.show(self.ctx, number)

    async def card_stats(self, batch: str | None = None) -> CardStats:
        return await cards.stats(self.ctx, batch)

    async def void_cards(self, batch: str) -> int:
        """Void every card of ``batch`` not yet redeemed; how many."""
        return await cards.void(self.ctx, batch)

    async def redeem_card(
        self,
        phone: str,
        card_number: str,
        pin: str,
        item_code: str | None,
        key: str,
        reply_route: Route | None = None,
    ) -> RedeemView:
        """充值卡充值 for ``phone``: call credit, or the catalogue item ``item_code``."""
        view: RedeemView = await self.execute(
            commands.RedeemCard(phone, card_number, pin, item_code, key, reply_route)
        )
        return view

    async def closing_check(self, number: str) -> SubscriberView:
        """What 销户 shows first; refused CLOSE_OWED, CLOSE_BOUND_PHONE, SUBSCRIBER_CLOSED."""
        return await closing.check(self.ctx, number)

    async def send_closing_code(self, number: str, route: Route | None = None) -> SubscriberView:
        """Check as ``closing_check`` and send a new 6-digit code by SMS (the outbox)."""
        return await closing.send_code(self.ctx, number, route)

    async def close_subscriber(
        self, number: str, key: str, code: str | None = None, reply_route: Route | None = None
    ) -> ClosedView:
        """销户: with the code from the phone, or without one at the counter."""
        view: ClosedView = await self.execute(
            commands.CloseSubscriber(number, key, code, reply_route)
        )
        return view

    # ---- reports -------------------------------------------------------------------------------

    async def records(
        self,
        agent_id: int,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> list[RecordView]:
        """The agent's transactions in [start, end), newest first (failed recharges left out)."""
        return await reports.records(self.engine, agent_id, start, end, limit)

    def day_bounds(self, day: date) -> tuple[datetime, datetime]:
        """The business day ``day`` (in the configured zone) as a UTC [start, end)."""
        return reports.day_bounds(day, self.ctx.zone)

    def today(self) -> date:
        return self.clock.now().astimezone(self.ctx.zone).date()

    async def daily_report(self, day: date) -> list[DailyReportRow]:
        """Per agent, for business day ``day``: recharges (count, sum, commission), reversals."""
        return await reports.daily_report(self.engine, day, self.ctx.zone)

    async def refunds(self, day: date) -> list[RecordView]:
        """Subscriber accounts closed on business day ``day``, each with its refund owed."""
        return await reports.refunds(self.engine, day, self.ctx.zone)

    async def trial_balance(self) -> TrialBalance:
        """Every account's balance added up (zero when the books balance), and each account's
        stored balance checked against its journal lines and reservations."""
        return await reports.trial_balance(self.engine)


def _writer(ctx: LedgerContext, agent_cache: AgentCache | None) -> RechargeWriter:
    """The recharge writer of the context's database (its driver imported only then)."""
    if ctx.postgres:
        from smsmenu.ledger.writer_pg import PostgresWriter

        return PostgresWriter(ctx, agent_cache)
    from smsmenu.ledger.writer_sqlite import SqliteWriter, database_path

    return SqliteWriter(ctx, database_path(str(ctx.engine.url)))


__all__ = ["Faults", "LedgerService"]

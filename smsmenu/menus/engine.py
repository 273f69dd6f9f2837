"""The menu engine: one inbound message in, the direct reply out (SPEC §4, §5, §10, §11).

``MenuEngine.handle`` claims the phone in the session store: under the phone's lock the store
decides whether the message is a copy of one taken in before (``menus.intake``: a copy of an
answered message gets its stored reply again and changes nothing), counts a new one against the
rate limit and loads the session. One step runs; the new session and the reply are committed in
one compare-and-set. The phone stays locked until the caller says whether the message's response
reached the link (``Handled.finish``): only then may the next message of that phone be
classified. Messages of one phone are handled one at a time; different phones in parallel, on
any number of engines sharing a store.

A step is a shortcut (agents only: ``CZ``, ``YE``, ``CS``, ``Y``; ``CK`` from any phone) or one
event of the phone's menu machine, restored at its saved configuration without re-running entry
actions. From a phone that is not bound to an agent the agents' shortcut keywords are ordinary
menu input, answered exactly as any other text the subscriber menu does not know: nothing says
whether a number is an agent.

Money operations carry an idempotency key that a copy of the message cannot change: a menu
operation's is made when its confirmation screen is shown, a ``Y`` confirmation's when the
confirmation was asked for, a ``CZ`` shortcut's is its message id. Their result notice is
written by the ledger (one result SMS per operation), so the engine's own reply to them is
empty unless the ledger refused or left a recharge pending (``say_if_pending``).

A message whose step fails is not answered (the SMSC resends it) until it has failed
``max_attempts`` times; then, as when its earlier copies never finished at all (a worker that
died on it each time), it is kept in the dead-letter list with its error and answered with a
short "try later".
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from smsmenu.clock import Clock
from smsmenu.digits import masked
from smsmenu.keys import SecretKeys
from smsmenu.ledger.api import AgentLedger, RechargeRequest, Refusal, Rule
from smsmenu.ledger.deadletters import DeadLetter, DeadLetterSink
from smsmenu.ledger.shortcut_acks import ShortcutAcks
from smsmenu.menus import shortcuts
from smsmenu.menus.agent import AgentMenu, say_if_pending
from smsmenu.menus.base import MachinePool, Turn
from smsmenu.menus.sealing import Sealer
from smsmenu.menus.session import IDLE, CorruptSession, PendingRecharge, PendingRetry, Session
from smsmenu.menus.shortcuts import (
    BalanceCommand,
    CardCommand,
    ConfirmCommand,
    RechargeCommand,
    RetryCommand,
    SaleCommand,
    ShortcutError,
)
from smsmenu.menus.store import Claim, ClaimStatus, SessionStore
from smsmenu.menus.subscriber import SubscriberMenu
from smsmenu.messages import Inbound, Outbound
from smsmenu.money import format_yuan
from smsmenu.texts import Catalogue

EVENTS = {"0": "back", "00": "home", "#": "end"}

log = logging.getLogger("smsmenu.menus")
#: The longest pause between two tries of a phone's lock held elsewhere. Short: with several
#: workers an agent's next message often arrives at another worker while the first still holds
#: the lock for its last store calls (the result SMS left at the commit), a few ms at most.
_BUSY_PAUSE_MAX_S = 0.005


class EngineBusy(RuntimeError):
    """The phone's lock stayed taken for longer than the engine waits; the message was not
    handled (the transport should not acknowledge it, so that it is delivered again)."""


@dataclass(frozen=True)
class EngineConfig:
    service_number: str
    zone: ZoneInfo
    session_timeout_s: float = 180.0
    rate_limit_per_min: int = 30
    duplicate_window_s: float = 60.0  # identical shortcut recharge asks for confirmation
    lock_wait_s: float = 20.0  # give up waiting for a phone's lock after this long
    max_attempts: int = 3  # a message failing this often is dead-lettered and answered


@dataclass(frozen=True)
class Handled:
    """A message taken in: its direct replies, its id (for logs; "" when it was not taken
    in, e.g. over the rate limit) and ``finish``, to call once its response was written or
    could not be (the phone is held until then)."""

    replies: list[Outbound]
    message_id: str = ""
    finisher: Callable[[bool], Awaitable[None]] | None = None

    async def finish(self, acked: bool) -> None:
        if self.finisher is not None:
            await self.finisher(acked)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def redact(text: str) -> str:
    """A message text as it may be kept for people: every digit masked (a PIN, a number)."""
    return masked(text)[:320]


class MenuEngine:
    """Turns inbound messages into replies; see the module notes."""

    def __init__(
        self,
        *,
        ledger: AgentLedger,
        store: SessionStore,
        texts: Catalogue,
        clock: Clock,
        config: EngineConfig,
        keys: SecretKeys,
        dead_letters: DeadLetterSink,
        shortcut_acks: ShortcutAcks | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.texts = texts
        self.clock = clock
        self.config = config
        self.keys = keys
        self.dead_letters = dead_letters
        # Only for a store whose memory dies with this worker (see ``ledger.shortcut_acks``).
        self.shortcut_acks = shortcut_acks
        self.pools = {"agent": MachinePool(AgentMenu), "subscriber": MachinePool(SubscriberMenu)}
        self.sealer = Sealer(keys.derive("session-seal"))

    def fingerprint(self, inbound: Inbound) -> str:
        """What identifies the message's content when it must be matched: a keyed HMAC."""
        return self.keys.mac(
            "inbound", inbound.source, inbound.destination, inbound.text, inbound.resend_marks
        )

    async def handle(self, inbound: Inbound) -> Handled:
        """Take ``inbound`` in and answer it; the caller must ``finish`` the result."""
        phone, cfg = inbound.source, self.config
        fingerprint = self.fingerprint(inbound)
        deadline = time.monotonic() + cfg.lock_wait_s
        pause, conflicts = 0.001, 0
        while True:
            now = self.clock.now()
            claim = await self.store.claim(
                phone,
                fingerprint,
                arrived_ms=_ms(inbound.received_at or now),
                now_ms=_ms(now),
                minute=int(now.timestamp() // 60),
                limit=cfg.rate_limit_per_min,
            )
            if claim.status is ClaimStatus.BUSY:
                if time.monotonic() > deadline:
                    raise EngineBusy(f"phone {phone} stayed locked for {cfg.lock_wait_s}s")
                await asyncio.sleep(pause)
                pause = min(pause * 2, _BUSY_PAUSE_MAX_S)
                continue
            if claim.status is ClaimStatus.LIMITED:
                notice = [self.texts.render("rate_limited")] if claim.notify else []
                return Handled(self._reply(inbound, notice, True))
            handled = await self._handle_claimed(inbound, claim, fingerprint)
            if handled is not None:
                return handled
            conflicts += 1  # our lock expired and another worker moved the session on
            if conflicts > 3:
                raise EngineBusy(f"phone {phone}: session kept changing under us")

    async def _handle_claimed(
        self, inbound: Inbound, claim: Claim, fingerprint: str
    ) -> Handled | None:
        """Answer a claimed message; None if the commit lost the lock or the version."""
        phone = inbound.source
        moved: list[str] = []  # the key of a one-message operation this message ran

        async def finish(acked: bool) -> None:
            await self.store.finish(
                phone, claim, fingerprint=fingerprint, acked=acked, now_ms=_ms(self.clock.now())
            )
            if acked and moved and self.shortcut_acks is not None:
                self.shortcut_acks.acked(moved[0])

        if claim.status is ClaimStatus.DUPLICATE:
            text, final = json.loads(claim.reply or '["", true]')
            return Handled(
                self._reply(inbound, [text] if text else [], final), claim.message_id, finish
            )
        if claim.attempts > self.config.max_attempts:  # earlier copies never finished
            return await self._dead_letter(inbound, claim, fingerprint, "never finished", finish)
        try:
            parts, final, session = await self._step(inbound, claim, fingerprint, moved)
            text = "\n".join(parts)
            session.version = claim.version + 1
            saved = await self._commit(
                phone,
                claim,
                fingerprint,
                None if session.empty else session.to_json(),
                session.version,
                [text, final],
            )
        except Exception as exc:
            if claim.attempts < self.config.max_attempts:
                await finish(False)
                raise
            log.error(
                "mo id=%s from %s failed %d times (%s): dead-lettered",
                claim.message_id,
                phone,
                claim.attempts,
                type(exc).__name__,
            )
            error = f"{type(exc).__name__}: {exc}"
            return await self._dead_letter(inbound, claim, fingerprint, error, finish)
        if not saved:
            await finish(False)
            return None
        return Handled(
            self._reply(inbound, [text] if text else [], final), claim.message_id, finish
        )

    async def _commit(
        self,
        phone: str,
        claim: Claim,
        fingerprint: str,
        session: str | None,
        version: int,
        reply: list[object],
    ) -> bool:
        cfg = self.config
        return await self.store.commit(
            phone,
            claim,
            fingerprint=fingerprint,
            session=session,
            version=version,
            session_ttl_s=max(cfg.session_timeout_s, cfg.duplicate_window_s),
            reply=json.dumps(reply, ensure_ascii=False),
            now_ms=_ms(self.clock.now()),
        )

    async def _dead_letter(
        self,
        inbound: Inbound,
        claim: Claim,
        fingerprint: str,
        error: str,
        finish: Callable[[bool], Awaitable[None]],
    ) -> Handled:
        """Keep the message in the dead-letter list and answer it with a short "try later";
        the session stays as it was."""
        try:
            await self.dead_letters.add(
                DeadLetter(
                    message_id=claim.message_id,
                    source=inbound.source,
                    destination=inbound.destination,
                    transport=inbound.route.transport.value,
                    text=redact(inbound.text),
                    error=error[:400],
                    attempts=claim.attempts,
                    created_at=self.clock.now(),
                )
            )
            text = self.texts.render("service_busy")
            saved = await self._commit(
                inbound.source, claim, fingerprint, claim.session, claim.version + 1, [text, True]
            )
        except BaseException:
            await finish(False)
            raise
        if not saved:
            await finish(False)
            raise EngineBusy(f"phone {inbound.source}: session changed while dead-lettering")
        return Handled(self._reply(inbound, [text], True), claim.message_id, finish)

    async def answer(self, inbound: Inbound) -> list[Outbound]:
        """Handle ``inbound`` and finish it as answered (``smsmenu chat``, tests): the replies."""
        handled = await self.handle(inbound)
        await handled.finish(True)
        return handled.replies

    def _reply(self, inbound: Inbound, texts: list[str], final: bool) -> list[Outbound]:
        route = inbound.route.ending(final)
        return [Outbound(inbound.source, text, self.config.service_number, route) for text in texts]

    async def _step(
        self, inbound: Inbound, claim: Claim, fingerprint: str, moved: list[str]
    ) -> tuple[list[str], bool, Session]:
        """One step; the key of a one-message operation it ran is appended to ``moved``."""
        cfg, now = self.config, self.clock.now()
        ts = now.timestamp()
        phone, text = inbound.source, inbound.text.strip()
        session: Session | None = None
        if claim.session:
            try:
                session = Session.from_json(claim.session)
            except CorruptSession:
                session = None
        ussd_opening = inbound.route.ussd is not None and inbound.route.ussd.opening
        live = session is not None and session.live(ts, cfg.session_timeout_s) and not ussd_opening
        if session is None or not live:
            agent_id = await self.ledger.agent_id_for_phone(phone)
            if session is None or session.agent_id != agent_id:
                session = Session(menu="agent" if agent_id is not None else "subscriber")
                session.agent_id = agent_id
            session.end_dialogue()
        session.prune(ts)
        turn = Turn(
            ledger=self.ledger,
            texts=self.texts,
            sealer=self.sealer,
            zone=cfg.zone,
            phone=phone,
            message_id=claim.message_id,
            fingerprint=fingerprint,
            route=inbound.route,
            now=now,
            agent_id=session.agent_id,
            data=session.data,
        )
        word = shortcuts.keyword(text)
        if word == "CK" or (session.menu == "agent" and word is not None):
            await self._shortcut(session, turn, text, ts, moved)
            return turn.parts, not session.in_dialogue, session

        pool = self.pools[session.menu]
        if not session.in_dialogue or not pool.valid_configuration(session.states):
            session.end_dialogue()
            turn.data = session.data
            event = "open"
        else:
            event = EVENTS.get(text, "input")
        states = await pool.step(session.states, event, turn, text)
        session.states, session.data, session.touched = states, turn.data, ts
        if states == IDLE:
            session.end_dialogue()
        return turn.parts, not session.in_dialogue, session

    # -- shortcuts (SPEC §5) -----------------------------------------------------------------

    async def _shortcut(
        self, session: Session, turn: Turn, text: str, ts: float, moved: list[str]
    ) -> None:
        try:
            command = shortcuts.parse(text)
        except ShortcutError as exc:
            turn.say(exc.reason)
            turn.say(exc.usage)
            return
        if isinstance(command, CardCommand):
            key = turn.shortcut_key
            moved.append(key)
            await self._redeem(turn, command, key)
            return
        agent_id = session.agent_id
        assert agent_id is not None and command is not None
        window = self.config.duplicate_window_s
        if isinstance(command, RechargeCommand):
            number, amount = command.number, command.amount_fen
            # The guard is the ledger's, in the recharge's own transaction: a session lost
            # with its process (the in-process store) cannot let a resent CZ run twice, and a
            # copy of this very message gets its first result, not the question.
            key = turn.shortcut_key
            moved.append(key)
            refused = await self._recharge(session, turn, command, key, window)
            if refused is not None and refused.rule is Rule.DUPLICATE_RECHARGE:
                session.pending = PendingRecharge(
                    command.kind, number, amount, command.notify, ts + window, turn.new_op_key()
                )
                turn.say("shortcut_duplicate", number=number, amount=format_yuan(amount))
        elif isinstance(command, SaleCommand):
            key = turn.shortcut_key
            moved.append(key)
            try:
                await self.ledger.sell_item(
                    agent_id,
                    command.number,
                    command.item_code,
                    command.pin,
                    key,
                    turn.route.ending(final=True),
                )
            except Refusal as refusal:
                turn.refusal(refusal)
        elif isinstance(command, BalanceCommand):
            try:
                balance = await self.ledger.balance(agent_id, command.pin)
            except Refusal as refusal:
                turn.refusal(refusal)
                return
            turn.say("agent_balance_result", balance=format_yuan(balance))
        elif isinstance(command, RetryCommand):
            listed = await self.ledger.retry_list(agent_id)
            failed = [r for r in listed if r.number == command.number]
            if not failed:
                turn.say("shortcut_retry_none", number=command.number)
                return
            latest = max(failed, key=lambda r: r.created_at)
            session.pending = PendingRetry(
                latest.tx_id, latest.number, latest.amount_fen, ts + window, turn.new_op_key()
            )
            turn.say(
                "shortcut_retry_confirm",
                number=latest.number,
                amount=format_yuan(latest.amount_fen),
            )
        elif isinstance(command, ConfirmCommand):
            await self._confirm(session, turn, command, ts)

    async def _redeem(self, turn: Turn, command: CardCommand, key: str) -> None:
        """CK: redeem a card for the sending number; the ledger sends the result SMS."""
        try:
            await self.ledger.redeem_card(
                turn.phone,
                command.card_number,
                command.pin,
                command.item_code,
                key,
                turn.route.ending(final=True),
            )
        except Refusal as refusal:
            turn.refusal(refusal)

    async def _confirm(
        self, session: Session, turn: Turn, command: ConfirmCommand, ts: float
    ) -> None:
        pending = session.pending
        if pending is None:
            turn.say("shortcut_nothing_pending")
            return
        session.pending = None
        key = turn.op_ledger_key(pending.key)
        if isinstance(pending, PendingRecharge):
            recharge = RechargeCommand(
                pending.kind, pending.number, pending.amount_fen, command.pin, pending.notify
            )
            refused = await self._recharge(session, turn, recharge, key)
        else:
            try:
                view = await self.ledger.retry(
                    session.agent_id or 0,
                    pending.tx_id,
                    command.pin,
                    key,
                    turn.route.ending(final=True),
                )
                say_if_pending(turn, view)
                refused = None
            except Refusal as refusal:
                turn.refusal(refusal)
                refused = refusal
        if refused is not None and refused.rule is Rule.WRONG_PIN:
            session.pending = pending  # the agent may send Y again with the right password

    async def _recharge(
        self,
        session: Session,
        turn: Turn,
        command: RechargeCommand,
        key: str,
        duplicate_window_s: float | None = None,
    ) -> Refusal | None:
        """Run the recharge; its refusal (said, unless it is the duplicate guard's question)."""
        request = RechargeRequest(
            agent_id=session.agent_id or 0,
            kind=command.kind,
            number=command.number,
            amount_fen=command.amount_fen,
            pin=command.pin,
            key=key,
            notify=command.notify,
            reply_route=turn.route.ending(final=True),
            duplicate_window_s=duplicate_window_s,
        )
        try:
            view = await self.ledger.recharge(request)
        except Refusal as refusal:
            if refusal.rule is not Rule.DUPLICATE_RECHARGE:
                turn.refusal(refusal)
            return refusal
        say_if_pending(turn, view)
        return None

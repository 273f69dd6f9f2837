"""The menu engine: one inbound message in, the direct reply out (SPEC §4, §5, §10).

``MenuEngine.handle`` claims the phone in the session store (a redelivered message is answered
from its stored reply; else the per-phone lock is taken, the message counted against the rate
limit and the session loaded), runs one step, and commits the new session with the reply in one
compare-and-set. Messages of one phone are handled one at a time; different phones in
parallel, on any number of engines sharing a store.

A step is a shortcut (agents only: ``CZ``, ``YE``, ``CS``, ``Y``) or one event of the phone's
menu machine, restored at its saved configuration without re-running entry actions. From a phone
that is not bound to an agent the shortcut keywords are ordinary menu input, answered exactly
as any other text the subscriber menu does not know: nothing says whether a number is an agent.

Money operations (recharge, retry, transfer) carry an idempotency key derived from the message
key, so a redelivery can never move money twice even if its stored reply was lost; their result
notice is written by the ledger (one result SMS per operation), so the engine's own reply to
them is empty unless the ledger refused or left a recharge pending (``say_if_pending``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from smsmenu.clock import Clock
from smsmenu.ledger.api import AgentLedger, Kind, RechargeRequest, Refusal, Rule
from smsmenu.menus import shortcuts
from smsmenu.menus.agent import AgentMenu, say_if_pending
from smsmenu.menus.base import MachinePool, Turn
from smsmenu.menus.sealing import Sealer
from smsmenu.menus.session import IDLE, CorruptSession, Session
from smsmenu.menus.shortcuts import (
    BalanceCommand,
    ConfirmCommand,
    RechargeCommand,
    RetryCommand,
    ShortcutError,
)
from smsmenu.menus.store import Claim, ClaimStatus, SessionStore
from smsmenu.menus.subscriber import SubscriberMenu
from smsmenu.messages import Inbound, Outbound
from smsmenu.money import format_yuan
from smsmenu.texts import Catalogue

EVENTS = {"0": "back", "00": "home", "#": "end"}


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
    reply_ttl_s: float = 86400.0  # how long a redelivered message gets its first reply
    lock_wait_s: float = 20.0  # give up waiting for a phone's lock after this long


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
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.texts = texts
        self.clock = clock
        self.config = config
        self.pools = {"agent": MachinePool(AgentMenu), "subscriber": MachinePool(SubscriberMenu)}
        self._sealer: Sealer | None = None

    async def handle(self, inbound: Inbound) -> list[Outbound]:
        """The direct reply to ``inbound`` (possibly none), after the session is saved."""
        phone, cfg = inbound.source, self.config
        now = self.clock.now()
        minute = int(now.timestamp() // 60)
        deadline = time.monotonic() + cfg.lock_wait_s
        pause, conflicts = 0.001, 0
        while True:
            claim = await self.store.claim(
                phone, inbound.message_key, minute=minute, limit=cfg.rate_limit_per_min
            )
            if claim.status is ClaimStatus.DUPLICATE:
                text, final = json.loads(claim.reply or '["", true]')
                return self._reply(inbound, [text] if text else [], final)
            if claim.status is ClaimStatus.LIMITED:
                if not claim.notify:
                    return []
                return self._reply(inbound, [self.texts.render("rate_limited")], True)
            if claim.status is ClaimStatus.BUSY:
                if time.monotonic() > deadline:
                    raise EngineBusy(f"phone {phone} stayed locked for {cfg.lock_wait_s}s")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
                continue
            try:
                parts, final, session = await self._step(inbound, claim)
            except BaseException:
                await self.store.release(phone, claim)
                raise
            text = "\n".join(parts)
            session.version = claim.version + 1
            saved = await self.store.commit(
                phone,
                claim,
                session=None if session.empty else session.to_json(),
                version=session.version,
                session_ttl_s=max(cfg.session_timeout_s, cfg.duplicate_window_s),
                message_key=inbound.message_key,
                reply=json.dumps([text, final], ensure_ascii=False),
                reply_ttl_s=cfg.reply_ttl_s,
            )
            if saved:
                return self._reply(inbound, [text] if text else [], final)
            conflicts += 1  # our lock expired and another worker moved the session on
            if conflicts > 3:
                raise EngineBusy(f"phone {phone}: session kept changing under us")

    def _reply(self, inbound: Inbound, texts: list[str], final: bool) -> list[Outbound]:
        route = inbound.route.ending(final)
        return [Outbound(inbound.source, text, self.config.service_number, route) for text in texts]

    async def sealer(self) -> Sealer:
        if self._sealer is None:
            key = await self.store.sealing_key()
            self._sealer = self._sealer or Sealer(key)
        return self._sealer

    async def _step(self, inbound: Inbound, claim: Claim) -> tuple[list[str], bool, Session]:
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
            agent = await self.ledger.agent_for_phone(phone)
            agent_id = agent.agent_id if agent is not None else None
            if session is None or session.agent_id != agent_id:
                session = Session(menu="agent" if agent_id is not None else "subscriber")
                session.agent_id = agent_id
            session.end_dialogue()
        session.prune(ts)
        turn = Turn(
            ledger=self.ledger,
            texts=self.texts,
            sealer=await self.sealer(),
            zone=cfg.zone,
            phone=phone,
            message_key=inbound.message_key,
            route=inbound.route,
            now=now,
            agent_id=session.agent_id,
            data=session.data,
        )
        if session.menu == "agent" and shortcuts.keyword(text) is not None:
            await self._shortcut(session, turn, text, ts)
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

    async def _shortcut(self, session: Session, turn: Turn, text: str, ts: float) -> None:
        try:
            command = shortcuts.parse(text)
        except ShortcutError as exc:
            turn.say(exc.reason)
            turn.say(exc.usage)
            return
        agent_id = session.agent_id
        assert agent_id is not None and command is not None
        window = self.config.duplicate_window_s
        if isinstance(command, RechargeCommand):
            number, amount = command.number, command.amount_fen
            # Asked of the ledger, not remembered in the session: a session lost with its
            # process (the in-process store) must not let a redelivered CZ run twice.
            if await self.ledger.recent_duplicate(agent_id, number, amount, window) is not None:
                session.pending = {
                    "op": "recharge",
                    "kind": command.kind.value,
                    "number": number,
                    "amount": amount,
                    "notify": command.notify,
                    "expires": ts + window,
                }
                turn.say("shortcut_duplicate", number=number, amount=format_yuan(amount))
                return
            await self._recharge(session, turn, command)
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
            session.pending = {
                "op": "retry",
                "tx": latest.tx_id,
                "number": latest.number,
                "amount": latest.amount_fen,
                "expires": ts + window,
            }
            turn.say(
                "shortcut_retry_confirm",
                number=latest.number,
                amount=format_yuan(latest.amount_fen),
            )
        elif isinstance(command, ConfirmCommand):
            await self._confirm(session, turn, command, ts)

    async def _confirm(
        self, session: Session, turn: Turn, command: ConfirmCommand, ts: float
    ) -> None:
        pending = session.pending
        if pending is None:
            turn.say("shortcut_nothing_pending")
            return
        session.pending = None
        if pending["op"] == "recharge":
            recharge = RechargeCommand(
                Kind(pending["kind"]),
                str(pending["number"]),
                int(pending["amount"]),
                command.pin,
                pending.get("notify"),
            )
            refused = await self._recharge(session, turn, recharge)
        else:
            try:
                view = await self.ledger.retry(
                    session.agent_id or 0,
                    int(pending["tx"]),
                    command.pin,
                    turn.ledger_key,
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
        self, session: Session, turn: Turn, command: RechargeCommand
    ) -> Refusal | None:
        request = RechargeRequest(
            agent_id=session.agent_id or 0,
            kind=command.kind,
            number=command.number,
            amount_fen=command.amount_fen,
            pin=command.pin,
            key=turn.ledger_key,
            notify=command.notify,
            reply_route=turn.route.ending(final=True),
        )
        try:
            view = await self.ledger.recharge(request)
        except Refusal as refusal:
            turn.refusal(refusal)
            return refusal
        say_if_pending(turn, view)
        return None

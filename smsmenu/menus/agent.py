"""The agent menu of SPEC §4, declared as one python-statemachine machine.

Every screen is a state inside the compound ``session``; ``idle`` is outside any dialogue.
``home`` (``00``) and ``end`` (``#``) are declared once on ``session`` and so work from every
screen; ``back`` (``0``) is declared screen by screen (one menu, or one step of a flow, back).
Operations end the dialogue: the ledger sends their result notice itself (the agent gets one
result SMS per operation), so after a recharge, retry or transfer this menu says nothing —
except for a recharge left pending (billing did not answer): the agent is told that it is
being processed and that the result follows by SMS.

The machine does no I/O: an action that needs the ledger asks for an operation
(``Turn.call``); the pool runs it from ``OPERATIONS`` once the step is over and feeds its
outcome (``quoted``, ``wrong_pin``, ``done``, ...) back to the machine as the next event.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, ClassVar

from statemachine import State

from smsmenu.ledger.api import Kind, RechargeRequest, RechargeStatus, RechargeView, Refusal, Rule
from smsmenu.menus import validate
from smsmenu.menus.base import MenuMachine, Parser, Turn
from smsmenu.menus.validate import NOTIFY_KINDS
from smsmenu.money import format_yuan

# Refusals that mean the number is wrong: the dialogue goes back to the number screen.
TARGET_RULES = frozenset(
    {Rule.BAD_NUMBER, Rule.TARGET_UNKNOWN, Rule.TARGET_CLOSED, Rule.TARGET_KIND_MISMATCH}
)
RETRY_LIST_MAX = 5


def _kind(turn: Turn) -> Kind:
    return Kind(turn.data["kind"])


def _old_pin(turn: Turn) -> str | None:
    sealed = turn.data.get("old")
    return turn.sealer.open(sealed, turn.phone) if isinstance(sealed, str) else None


def _parse_number(text: str, turn: Turn) -> str:
    return validate.number(_kind(turn), text)


def _parse_kind(text: str, turn: Turn) -> str:
    return validate.kind(text).value


def _parse_amount(text: str, turn: Turn) -> int:
    return validate.amount(text)


def _parse_notify(text: str, turn: Turn) -> str | None:
    return validate.notify(text)


def _parse_pin(text: str, turn: Turn) -> str:
    return validate.pin(text)


def _parse_sealed_pin(text: str, turn: Turn) -> str:
    return turn.sealer.seal(validate.pin(text), turn.phone)


def _parse_sealed_new_pin(text: str, turn: Turn) -> str:
    return turn.sealer.seal(validate.new_pin(text, _old_pin(turn)), turn.phone)


def _parse_retry_pick(text: str, turn: Turn) -> int:
    listed = turn.data.get("retries", [])
    return int(listed[validate.choice(text, len(listed)) - 1]["tx"])


class AgentMenu(MenuMachine):
    """主菜单 → 天翼 → 空中充值 → 充值 / 异常处理 / 账户管理 / 业务管理 (SPEC §4)."""

    PREFIX = "agent_"
    CONFIRMS = frozenset({"rc_confirm", "retry_pin", "tr_pin"})

    idle = State(initial=True)

    class session(State.Compound):
        main = State(initial=True)
        tianyi = State()
        air = State()
        rc_kind = State()
        rc_number = State()
        rc_amount = State()
        rc_notify = State()
        rc_confirm = State()
        exc_menu = State()
        retry_pick = State()
        retry_pin = State()
        account = State()
        bal_pin = State()
        tp_old = State()
        tp_new = State()
        tp_again = State()
        rec_pin = State()
        tr_amount = State()
        tr_pin = State()
        business = State()
        mp_old = State()
        mp_new = State()
        mp_again = State()

    open = idle.to(session)
    home = session.to(session.main)
    end = session.to(idle, on="goodbye")
    done = session.to(idle)

    input = (
        session.main.to(session.tianyi, cond="pick_1")
        | session.main.to.itself(internal=True, on="bad_choice")
        | session.tianyi.to(session.air, cond="pick_1")
        | session.tianyi.to.itself(internal=True, on="bad_choice")
        | session.air.to(session.rc_kind, cond="pick_1")
        | session.air.to(session.exc_menu, cond="pick_2")
        | session.air.to(session.account, cond="pick_3")
        | session.air.to(session.business, cond="pick_4")
        | session.air.to.itself(internal=True, on="bad_choice")
        # 充值: kind -> number -> amount -> [notify] -> confirm with the trade password
        | session.rc_kind.to(session.rc_number, cond="valid", on="keep")
        | session.rc_kind.to.itself(internal=True, on="invalid")
        | session.rc_number.to(session.rc_amount, cond="valid", on="keep")
        | session.rc_number.to.itself(internal=True, on="invalid")
        | session.rc_amount.to(session.rc_notify, cond=["valid", "needs_notify"], on="keep")
        | session.rc_amount.to.itself(internal=True, cond="valid", on="quote")
        | session.rc_amount.to.itself(internal=True, on="invalid")
        | session.rc_notify.to.itself(internal=True, cond="valid", on="quote")
        | session.rc_notify.to.itself(internal=True, on="invalid")
        | session.rc_confirm.to.itself(internal=True, cond="valid", on="recharge")
        | session.rc_confirm.to.itself(internal=True, on="invalid")
        # 异常处理 -> 重复充值
        | session.exc_menu.to.itself(internal=True, cond="pick_1", on="list_retries")
        | session.exc_menu.to.itself(internal=True, on="bad_choice")
        | session.retry_pick.to(session.retry_pin, cond="valid", on="keep")
        | session.retry_pick.to.itself(internal=True, on="invalid")
        | session.retry_pin.to.itself(internal=True, cond="valid", on="retry")
        | session.retry_pin.to.itself(internal=True, on="invalid")
        # 账户管理
        | session.account.to(session.bal_pin, cond="pick_1")
        | session.account.to(session.tp_old, cond="pick_2")
        | session.account.to(session.rec_pin, cond="pick_3")
        | session.account.to(session.tr_amount, cond="pick_4")
        | session.account.to.itself(internal=True, on="bad_choice")
        | session.bal_pin.to.itself(internal=True, cond="valid", on="balance")
        | session.bal_pin.to.itself(internal=True, on="invalid")
        | session.rec_pin.to.itself(internal=True, cond="valid", on="records")
        | session.rec_pin.to.itself(internal=True, on="invalid")
        | session.tr_amount.to(session.tr_pin, cond="valid", on="keep")
        | session.tr_amount.to.itself(internal=True, on="invalid")
        | session.tr_pin.to.itself(internal=True, cond="valid", on="transfer")
        | session.tr_pin.to.itself(internal=True, on="invalid")
        | session.tp_old.to(session.tp_new, cond="valid", on="keep")
        | session.tp_old.to.itself(internal=True, on="invalid")
        | session.tp_new.to(session.tp_again, cond="valid", on="keep")
        | session.tp_new.to.itself(internal=True, on="invalid")
        | session.tp_again.to.itself(internal=True, cond="valid", on="change_pin")
        | session.tp_again.to.itself(internal=True, on="invalid")
        # 业务管理 -> 修改管理密码
        | session.business.to(session.mp_old, cond="pick_1")
        | session.business.to.itself(internal=True, on="bad_choice")
        | session.mp_old.to(session.mp_new, cond="valid", on="keep")
        | session.mp_old.to.itself(internal=True, on="invalid")
        | session.mp_new.to(session.mp_again, cond="valid", on="keep")
        | session.mp_new.to.itself(internal=True, on="invalid")
        | session.mp_again.to.itself(internal=True, cond="valid", on="change_pin")
        | session.mp_again.to.itself(internal=True, on="invalid")
    )

    back = (
        session.main.to.itself(internal=True, on="reshow")
        | session.tianyi.to(session.main)
        | session.air.to(session.tianyi)
        | session.rc_kind.to(session.air)
        | session.rc_number.to(session.rc_kind)
        | session.rc_amount.to(session.rc_number)
        | session.rc_notify.to(session.rc_amount)
        | session.rc_confirm.to(session.rc_notify, cond="needs_notify")
        | session.rc_confirm.to(session.rc_amount)
        | session.exc_menu.to(session.air)
        | session.retry_pick.to(session.exc_menu)
        | session.retry_pin.to(session.retry_pick)
        | session.account.to(session.air)
        | session.bal_pin.to(session.account)
        | session.tp_old.to(session.account)
        | session.tp_new.to(session.tp_old)
        | session.tp_again.to(session.tp_new)
        | session.rec_pin.to(session.account)
        | session.tr_amount.to(session.account)
        | session.tr_pin.to(session.tr_amount)
        | session.business.to(session.air)
        | session.mp_old.to(session.business)
        | session.mp_new.to(session.mp_old)
        | session.mp_again.to(session.mp_new)
    )

    # Outcomes raised by the operations, routed within the same step.
    quoted = session.rc_amount.to(session.rc_confirm) | session.rc_notify.to(session.rc_confirm)
    wrong_number = session.rc_amount.to(session.rc_number) | session.rc_notify.to(session.rc_number)
    wrong_notify = session.rc_notify.to.itself(internal=True, on="reshow")
    wrong_amount = session.rc_amount.to.itself(internal=True, on="reshow") | session.rc_notify.to(
        session.rc_amount
    )
    listed = session.exc_menu.to(session.retry_pick)
    none_listed = session.exc_menu.to.itself(internal=True, on="reshow")
    wrong_pin = (
        session.rc_confirm.to.itself(internal=True, on="reshow")
        | session.retry_pin.to.itself(internal=True, on="reshow")
        | session.bal_pin.to.itself(internal=True, on="reshow")
        | session.rec_pin.to.itself(internal=True, on="reshow")
        | session.tr_pin.to.itself(internal=True, on="reshow")
        | session.tp_again.to(session.tp_old)
        | session.mp_again.to(session.mp_old)
    )
    wrong_new_pin = session.tp_again.to(session.tp_new) | session.mp_again.to(session.mp_new)

    PARSERS: ClassVar[dict[str, Parser]] = {
        "rc_kind": _parse_kind,
        "rc_number": _parse_number,
        "rc_amount": _parse_amount,
        "rc_notify": _parse_notify,
        "rc_confirm": _parse_pin,
        "retry_pick": _parse_retry_pick,
        "retry_pin": _parse_pin,
        "bal_pin": _parse_pin,
        "rec_pin": _parse_pin,
        "tr_amount": _parse_amount,
        "tr_pin": _parse_pin,
        "tp_old": _parse_sealed_pin,
        "tp_new": _parse_sealed_new_pin,
        "tp_again": _parse_pin,
        "mp_old": _parse_sealed_pin,
        "mp_new": _parse_sealed_new_pin,
        "mp_again": _parse_pin,
    }
    KEEP: ClassVar[dict[str, str]] = {
        "rc_kind": "kind",
        "rc_number": "number",
        "rc_amount": "amount",
        "retry_pick": "retry_tx",
        "tr_amount": "amount",
        "tp_old": "old",
        "tp_new": "new",
        "mp_old": "old",
        "mp_new": "new",
    }

    # -- guards --------------------------------------------------------------------------

    def needs_notify(self) -> bool:
        return Kind(self.turn.data.get("kind", Kind.MOBILE.value)) in NOTIFY_KINDS

    # -- screens -------------------------------------------------------------------------

    def screen_params(self, state_id: str) -> dict[str, Any]:
        data, texts = self.turn.data, self.turn.texts
        params: dict[str, Any] = {"phone": self.turn.phone}
        if "kind" in data:
            params["kind"] = texts.render(f"kind_{data['kind']}")
            params["area"] = "" if data["kind"] == Kind.MOBILE.value else texts.render("area_hint")
        params["number"] = data.get("number", "")
        if isinstance(data.get("amount"), int):
            params["amount"] = format_yuan(data["amount"])
        if state_id == "rc_confirm":
            params["commission"] = format_yuan(data["commission"])
            params["debit"] = format_yuan(data["debit"])
        if state_id == "retry_pick":
            params["lines"] = "\n".join(
                f"{i} {item['number']} {format_yuan(item['amount'])}"
                for i, item in enumerate(data.get("retries", []), start=1)
            )
        if state_id == "retry_pin":
            chosen = next(
                item for item in data.get("retries", []) if item["tx"] == data.get("retry_tx")
            )
            params["number"] = chosen["number"]
            params["amount"] = format_yuan(chosen["amount"])
        return params

    # -- operations: the machine only asks for them; ``OPERATIONS`` runs them ------------

    def quote(self, text: str, source: Any) -> None:
        data = self.turn.data
        if source.id == "rc_amount":
            data["amount"] = validate.amount(text)
            data["notify"] = None
        else:
            data["notify"] = validate.notify(text)
        self.turn.call("quote", at=source.id)

    def recharge(self, text: str) -> None:
        self.turn.call("recharge", pin=validate.pin(text))

    def list_retries(self) -> None:
        self.turn.call("list_retries")

    def retry(self, text: str) -> None:
        self.turn.call("retry", pin=validate.pin(text))

    def transfer(self, text: str) -> None:
        self.turn.call("transfer", pin=validate.pin(text))

    def balance(self, text: str) -> None:
        self.turn.call("balance", pin=validate.pin(text))

    def records(self, text: str) -> None:
        self.turn.call("records", pin=validate.pin(text))

    def change_pin(self, text: str, source: Any) -> None:
        self.turn.call("change_pin", again=validate.pin(text), trade=source.id == "tp_again")


# -- operations: ask the ledger, say what it answered, return the outcome event -----------


def _agent(turn: Turn) -> int:
    assert turn.agent_id is not None, "the agent menu runs for agents only"
    return turn.agent_id


async def _quote(turn: Turn, at: str) -> str:
    data = turn.data
    try:
        quote = await turn.ledger.quote(
            _agent(turn), _kind(turn), data["number"], data["amount"], data["notify"]
        )
    except Refusal as refusal:
        turn.refusal(refusal)
        if refusal.rule in TARGET_RULES:
            return "wrong_number"
        if refusal.rule is Rule.BAD_NOTIFY_NUMBER and at == "rc_notify":
            return "wrong_notify"
        if refusal.rule in {Rule.BAD_AMOUNT, Rule.INSUFFICIENT_FUNDS}:
            return "wrong_amount"
        return "done"
    data["commission"] = quote.commission_fen
    data["debit"] = quote.debit_fen
    return "quoted"


async def _money(turn: Turn, operation: Awaitable[Any]) -> tuple[str, Any]:
    """Run a money operation whose result notice the ledger sends; say only refusals.
    Returns the outcome event and the ledger's result (None when refused)."""
    try:
        result = await operation
    except Refusal as refusal:
        turn.refusal(refusal)
        return ("wrong_pin" if refusal.rule is Rule.WRONG_PIN else "done"), None
    return "done", result


def say_if_pending(turn: Turn, view: RechargeView | None) -> None:
    """A recharge whose billing outcome is not known yet has no result notice now: say that it
    is being processed (its result notice follows by SMS once it resolves)."""
    if view is not None and view.status is RechargeStatus.PENDING:
        turn.say(
            "agent_recharge_pending",
            number=view.number,
            amount=format_yuan(view.amount_fen),
            tx_id=view.tx_id,
        )


async def _recharge(turn: Turn, pin: str) -> str:
    data = turn.data
    request = RechargeRequest(
        agent_id=_agent(turn),
        kind=_kind(turn),
        number=data["number"],
        amount_fen=data["amount"],
        pin=pin,
        key=turn.op_ledger_key(),
        notify=data.get("notify"),
        reply_route=turn.route.ending(final=True),
    )
    outcome, view = await _money(turn, turn.ledger.recharge(request))
    say_if_pending(turn, view)
    return outcome


async def _list_retries(turn: Turn) -> str:
    failed = (await turn.ledger.retry_list(_agent(turn)))[:RETRY_LIST_MAX]
    if not failed:
        turn.say("retry_none")
        return "none_listed"
    turn.data["retries"] = [
        {"tx": item.tx_id, "number": item.number, "amount": item.amount_fen} for item in failed
    ]
    return "listed"


async def _retry(turn: Turn, pin: str) -> str:
    operation = turn.ledger.retry(
        _agent(turn), int(turn.data["retry_tx"]), pin, turn.op_ledger_key(), turn.route.ending(True)
    )
    outcome, view = await _money(turn, operation)
    say_if_pending(turn, view)
    return outcome


async def _transfer(turn: Turn, pin: str) -> str:
    operation = turn.ledger.transfer_to_phone(
        _agent(turn), int(turn.data["amount"]), pin, turn.op_ledger_key(), turn.route.ending(True)
    )
    outcome, _ = await _money(turn, operation)
    return outcome


async def _balance(turn: Turn, pin: str) -> str:
    try:
        balance = await turn.ledger.balance(_agent(turn), pin)
    except Refusal as refusal:
        turn.refusal(refusal)
        return "wrong_pin" if refusal.rule is Rule.WRONG_PIN else "done"
    turn.say("agent_balance_result", balance=format_yuan(balance))
    return "done"


async def _records(turn: Turn, pin: str) -> str:
    try:
        records = await turn.ledger.recent(_agent(turn), pin, 5)
    except Refusal as refusal:
        turn.refusal(refusal)
        return "wrong_pin" if refusal.rule is Rule.WRONG_PIN else "done"
    if not records:
        turn.say("agent_records_none")
    else:
        lines = "\n".join(
            turn.text(
                "agent_record_line",
                when=f"{turn.local(r.created_at):%m-%d %H:%M}",
                label=turn.text(f"record_{r.kind}") if f"record_{r.kind}" in turn.texts else r.kind,
                number=f"{r.number} " if r.number else "",
                amount=format_yuan(r.amount_fen),
            )
            for r in records
        )
        turn.say("agent_records_result", lines=lines)
    return "done"


async def _change_pin(turn: Turn, again: str, trade: bool) -> str:
    old = _old_pin(turn)
    sealed_new = turn.data.get("new")
    new = turn.sealer.open(sealed_new, turn.phone) if isinstance(sealed_new, str) else None
    if old is None or new is None:  # a seal from another key: start the change again
        turn.say("reason_start_again")
        return "wrong_pin"
    if again != new:
        turn.say("reason_pins_differ")
        return "wrong_new_pin"
    change = turn.ledger.change_trade_pin if trade else turn.ledger.change_mgmt_pin
    try:
        await change(_agent(turn), old, new)
    except Refusal as refusal:
        turn.refusal(refusal)
        if refusal.rule in {Rule.WRONG_PIN, Rule.WRONG_MGMT_PIN}:
            return "wrong_pin"
        if refusal.rule in {Rule.WEAK_PIN, Rule.SAME_PIN, Rule.BAD_PIN_FORMAT}:
            return "wrong_new_pin"
        return "done"
    turn.say("agent_trade_pin_changed" if trade else "agent_mgmt_pin_changed")
    return "done"


AgentMenu.OPERATIONS = {
    "quote": _quote,
    "recharge": _recharge,
    "list_retries": _list_retries,
    "retry": _retry,
    "transfer": _transfer,
    "balance": _balance,
    "records": _records,
    "change_pin": _change_pin,
}


__all__ = ["AgentMenu"]

"""The subscriber self-service menu of SPEC §8, for any phone that is not a bound phone.

1 余额查询 (with the prepaid validity and the allowances held) and 3 充值记录 answer at once
and end the dialogue. 2 充值卡充值: card number → card PIN (sealed in the session) → 1 话费 /
2 流量 / 3 套餐 (a numbered list from the product catalogue) → confirmation → the ledger
redeems the card and sends the result SMS itself. 4 销户: the balance is shown (an amount owed,
or a bound phone, is refused at once) → 1 sends a 6-digit code by SMS → the code closes the
account, and the ledger sends the confirmation SMS. A closed number gets one short notice for
any message and no menu.
"""

from __future__ import annotations

from typing import Any, ClassVar

from statemachine import State

from smsmenu.ledger.api import Refusal, Rule
from smsmenu.ledger.notices import validity_clause
from smsmenu.ledger.products import DATA, PLAN
from smsmenu.menus import validate
from smsmenu.menus.base import MenuMachine, Parser, Turn
from smsmenu.money import format_yuan


def _parse_card_number(text: str, turn: Turn) -> str:
    return validate.card_number(text)


def _parse_sealed_card_pin(text: str, turn: Turn) -> str:
    return turn.sealer.seal(validate.card_pin(text), turn.phone)


def _parse_item(text: str, turn: Turn) -> str:
    listed = turn.data.get("items", [])
    return str(listed[validate.choice(text, len(listed)) - 1]["code"])


def _parse_code(text: str, turn: Turn) -> str:
    return validate.code(text)


class SubscriberMenu(MenuMachine):
    PREFIX = "sub_"
    CONFIRMS = frozenset({"card_confirm", "close_code"})

    idle = State(initial=True)

    class session(State.Compound):
        main = State(initial=True)
        card_number = State()
        card_pin = State()
        card_use = State()
        card_item = State()
        card_confirm = State()
        close_ask = State()
        close_code = State()

    open = idle.to.itself(internal=True, on="check_number")
    live = idle.to(session)
    gone = idle.to.itself(internal=True)
    home = session.to(session.main)
    end = session.to(idle, on="goodbye")
    done = session.to(idle)
    input = (
        session.main.to.itself(internal=True, cond="pick_1", on="balance")
        | session.main.to(session.card_number, cond="pick_2")
        | session.main.to.itself(internal=True, cond="pick_3", on="topups")
        | session.main.to.itself(internal=True, cond="pick_4", on="close_check")
        | session.main.to.itself(internal=True, on="bad_choice")
        # 充值卡充值: number -> PIN -> what for -> [item] -> confirm
        | session.card_number.to(session.card_pin, cond="valid", on="keep")
        | session.card_number.to.itself(internal=True, on="invalid")
        | session.card_pin.to(session.card_use, cond="valid", on="keep")
        | session.card_pin.to.itself(internal=True, on="invalid")
        | session.card_use.to(session.card_confirm, cond="pick_1", on="credit_only")
        | session.card_use.to.itself(internal=True, cond="pick_2", on="list_data")
        | session.card_use.to.itself(internal=True, cond="pick_3", on="list_plans")
        | session.card_use.to.itself(internal=True, on="bad_choice")
        | session.card_item.to(session.card_confirm, cond="valid", on="keep")
        | session.card_item.to.itself(internal=True, on="invalid")
        | session.card_confirm.to.itself(internal=True, cond="pick_1", on="redeem")
        | session.card_confirm.to.itself(internal=True, on="bad_choice")
        # 销户: balance shown -> a code by SMS -> the code
        | session.close_ask.to.itself(internal=True, cond="pick_1", on="send_code")
        | session.close_ask.to.itself(internal=True, on="bad_choice")
        | session.close_code.to.itself(internal=True, cond="valid", on="close")
        | session.close_code.to.itself(internal=True, on="invalid")
    )
    back = (
        session.main.to.itself(internal=True, on="reshow")
        | session.card_number.to(session.main)
        | session.card_pin.to(session.card_number)
        | session.card_use.to(session.card_pin)
        | session.card_item.to(session.card_use)
        | session.card_confirm.to(session.card_use)
        | session.close_ask.to(session.main)
        | session.close_code.to(session.close_ask)
    )

    # Outcomes raised by the operations, routed within the same step.
    items_listed = session.card_use.to(session.card_item)
    no_items = session.card_use.to.itself(internal=True, on="reshow")
    wrong_card = session.card_confirm.to(session.card_number)
    closable = session.main.to(session.close_ask)
    code_sent = session.close_ask.to(session.close_code)
    wrong_code = session.close_code.to.itself(internal=True, on="reshow")

    PARSERS: ClassVar[dict[str, Parser]] = {
        "card_number": _parse_card_number,
        "card_pin": _parse_sealed_card_pin,
        "card_item": _parse_item,
        "close_code": _parse_code,
    }
    KEEP: ClassVar[dict[str, str]] = {
        "card_number": "card",
        "card_pin": "card_pin",
        "card_item": "item",
    }

    def screen_params(self, state_id: str) -> dict[str, Any]:
        data, turn = self.turn.data, self.turn
        params: dict[str, Any] = {"number": turn.phone, "card": data.get("card", "")}
        if state_id == "card_item":
            params["lines"] = "\n".join(
                f"{i} {item['name']} {format_yuan(item['price'])}"
                for i, item in enumerate(data.get("items", []), start=1)
            )
        if state_id == "card_confirm":
            chosen = next((i for i in data.get("items", []) if i["code"] == data.get("item")), None)
            params["what"] = (
                turn.text("sub_card_what_credit")
                if chosen is None
                else turn.text(
                    "sub_card_what_item", name=chosen["name"], price=format_yuan(chosen["price"])
                )
            )
        if state_id == "close_ask":
            params["balance"] = format_yuan(int(data.get("balance", 0)))
        return params

    # -- operations: the machine only asks for them; ``OPERATIONS`` runs them ------------

    def check_number(self) -> None:
        self.turn.call("check_number")

    def balance(self) -> None:
        self.turn.call("balance")

    def topups(self) -> None:
        self.turn.call("topups")

    def credit_only(self) -> None:
        self.turn.data["item"] = None

    def list_data(self) -> None:
        self.turn.call("list_items", kind=DATA)

    def list_plans(self) -> None:
        self.turn.call("list_items", kind=PLAN)

    def redeem(self) -> None:
        self.turn.call("redeem")

    def close_check(self) -> None:
        self.turn.call("close_check")

    def send_code(self) -> None:
        self.turn.call("send_code")

    def close(self, text: str) -> None:
        self.turn.call("close", code=validate.code(text))


async def _check_number(turn: Turn) -> str:
    found = await turn.ledger.subscriber(turn.phone)
    if found is not None and found.status == "closed":
        turn.say("sub_closed_notice")
        return "gone"
    return "live"


async def _balance(turn: Turn) -> str:
    found = await turn.ledger.subscriber(turn.phone)
    if found is None:
        turn.say("sub_unknown")
        return "done"
    held = "".join(
        turn.text("sub_held_data", code=a.code, mb=a.data_mb)
        if a.data_mb
        else turn.text("sub_held_plan", code=a.code)
        for a in found.allowances
    )
    turn.say(
        "sub_balance_result",
        number=turn.phone,
        balance=format_yuan(found.balance_fen),
        valid=validity_clause(turn.texts, found.valid_until),
        held=held,
    )
    return "done"


async def _topups(turn: Turn) -> str:
    records = await turn.ledger.subscriber_topups(turn.phone, 5)
    if not records:
        turn.say("sub_topups_none")
    else:
        lines = "\n".join(
            f"{turn.local(r.created_at):%m-%d %H:%M} {format_yuan(r.amount_fen)}" for r in records
        )
        turn.say("sub_topups_result", lines=lines)
    return "done"


async def _list_items(turn: Turn, kind: str) -> str:
    items = turn.ledger.products.of_kind(kind)
    if not items:
        turn.say("sub_card_no_items")
        return "no_items"
    turn.data["items"] = [{"code": i.code, "name": i.name, "price": i.price_fen} for i in items]
    return "items_listed"


async def _redeem(turn: Turn) -> str:
    sealed = turn.data.get("card_pin")
    pin = turn.sealer.open(sealed, turn.phone) if isinstance(sealed, str) else None
    if pin is None:  # a seal from another key: start again
        turn.say("reason_start_again")
        return "done"
    try:
        await turn.ledger.redeem_card(
            turn.phone,
            str(turn.data["card"]),
            pin,
            turn.data.get("item"),
            turn.op_ledger_key(),
            turn.route.ending(True),
        )
    except Refusal as refusal:
        turn.refusal(refusal)
        return "wrong_card" if refusal.rule is Rule.CARD_INVALID else "done"
    return "done"  # the ledger sent the result SMS


async def _close_check(turn: Turn) -> str:
    try:
        shown = await turn.ledger.closing_check(turn.phone)
    except Refusal as refusal:
        turn.refusal(refusal)
        return "done"
    turn.data["balance"] = shown.balance_fen
    return "closable"


async def _send_code(turn: Turn) -> str:
    try:
        await turn.ledger.send_closing_code(turn.phone)
    except Refusal as refusal:
        turn.refusal(refusal)
        return "done"
    return "code_sent"


async def _close(turn: Turn, code: str) -> str:
    try:
        await turn.ledger.close_subscriber(
            turn.phone, turn.op_ledger_key(), code, turn.route.ending(True)
        )
    except Refusal as refusal:
        turn.refusal(refusal)
        return "wrong_code" if refusal.rule is Rule.CLOSE_CODE_WRONG else "done"
    return "done"  # the ledger sent the confirmation SMS


SubscriberMenu.OPERATIONS = {
    "check_number": _check_number,
    "balance": _balance,
    "topups": _topups,
    "list_items": _list_items,
    "redeem": _redeem,
    "close_check": _close_check,
    "send_code": _send_code,
    "close": _close,
}

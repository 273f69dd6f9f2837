"""The subscriber self-service menu of SPEC §8, for any phone that is not a bound phone.

1 余额查询 and 3 充值记录 answer at once and end the dialogue; 2 充值卡充值 and 4 销户 are built
by another issue and answer that they are not available yet.
"""

from __future__ import annotations

from statemachine import State

from smsmenu.menus.base import MenuMachine, Turn
from smsmenu.money import format_yuan


class SubscriberMenu(MenuMachine):
    PREFIX = "sub_"

    idle = State(initial=True)

    class session(State.Compound):
        main = State(initial=True)

    open = idle.to(session)
    home = session.to(session.main)
    end = session.to(idle, on="goodbye")
    done = session.to(idle)
    back = session.main.to.itself(internal=True, on="reshow")
    input = (
        session.main.to.itself(internal=True, cond="pick_1", on="balance")
        | session.main.to.itself(internal=True, cond="pick_2", on="not_yet")
        | session.main.to.itself(internal=True, cond="pick_3", on="topups")
        | session.main.to.itself(internal=True, cond="pick_4", on="not_yet")
        | session.main.to.itself(internal=True, on="bad_choice")
    )

    def not_yet(self) -> None:
        self.turn.say("sub_not_available")
        self.show("main")

    def balance(self) -> None:
        self.turn.call("balance")

    def topups(self) -> None:
        self.turn.call("topups")


async def _balance(turn: Turn) -> str:
    found = await turn.ledger.subscriber(turn.phone)
    if found is None:
        turn.say("sub_unknown")
    else:
        balance = format_yuan(found.balance_fen)
        turn.say("sub_balance_result", number=turn.phone, balance=balance)
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


SubscriberMenu.OPERATIONS = {"balance": _balance, "topups": _topups}

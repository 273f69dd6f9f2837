"""What both menu machines share: the per-message context, screens, re-prompts, and a pool
that reuses machine instances instead of building one per message.

Theory of operation. A menu is a python-statemachine ``StateMachine`` whose states are the
screens; every message is one event: ``open`` (no live dialogue: show the main menu), ``back``
(``0``), ``home`` (``00``), ``end`` (``#``) or ``input`` carrying the text. Input validation is a
guard: the first transition whose guard accepts the text is taken, and the last one of each
state is an internal self-transition that re-prompts with the reason and changes nothing.
Entering a screen renders it (one generic entry action).

No I/O, sans-I/O style (h11): an action that needs the ledger only asks for an operation
(``Turn.call``); once the step is over the pool runs it (it may wait on the ledger, with the
machine given back meanwhile) and sends its outcome event (``done``, ``wrong_pin``,
``quoted``, ...) as the next step. So the machines have no async callback and run on
python-statemachine's synchronous engine, about a third cheaper per step than its async one.

Restore. A machine is rebuilt at a saved configuration by writing the active state ids onto
its model (an ``OrderedSet``, outermost first): python-statemachine reads the configuration from
the model on every access, so this runs no entry action. Building a machine costs about ten
steps (callback registration), so machines are pooled: each message borrows an instance, points
its model at the saved configuration and at the message's ``Turn``, sends one event, and gives
the instance back; when all are busy it waits for one. A machine whose step raised is dropped,
never reused.

The operations reach the ledger only through ``Turn.ledger`` (the ``AgentLedger`` interface).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from statemachine import StateMachine
from statemachine.orderedset import OrderedSet

from smsmenu.ledger.api import AgentLedger, Refusal
from smsmenu.ledger.refusals import refusal_text
from smsmenu.ledger.shortcut_acks import shortcut_key
from smsmenu.menus.sealing import Sealer
from smsmenu.menus.validate import Invalid
from smsmenu.messages import Route
from smsmenu.texts import Catalogue


@dataclass
class Turn:
    """Everything one message's step may use; built by the engine, dropped after the step."""

    ledger: AgentLedger
    texts: Catalogue
    sealer: Sealer
    zone: ZoneInfo
    phone: str
    message_id: str
    fingerprint: str
    route: Route
    now: datetime
    agent_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)
    # The operation the machine asked for, run by the pool after the step (never stored).
    pending: tuple[str, dict[str, Any]] | None = field(default=None, repr=False)

    def call(self, operation: str, /, **args: Any) -> None:
        """Ask for ``operation`` (a key of the machine's ``OPERATIONS``) with ``args``."""
        assert self.pending is None, "one operation per step"
        self.pending = (operation, args)

    def say(self, key: str, /, **params: Any) -> None:
        self.parts.append(self.texts.render(key, **params))

    def text(self, key: str, /, **params: Any) -> str:
        """The catalogue's text ``key`` (to build a part of what is said)."""
        return self.texts.render(key, **params)

    def refusal(self, refusal: Refusal) -> None:
        self.parts.append(refusal_text(self.texts, refusal, self.zone))

    @property
    def shortcut_key(self) -> str:
        """The idempotency key of a one-message operation (``CZ``): the message's id, which a
        copy of the message shares (``menus.intake``), with the fingerprint it was taken in
        under (a keyed HMAC: recovering what was typed from it needs the secret)."""
        return shortcut_key(self.phone, self.fingerprint, self.message_id)

    @staticmethod
    def new_op_key() -> str:
        """A fresh key for an operation about to be confirmed (kept in the session)."""
        return secrets.token_hex(8)

    def op_ledger_key(self, op_key: str | None = None) -> str:
        """The idempotency key of the operation a confirmation asked for (``op_key``, or the
        one made when the confirmation screen was shown): a copy of the confirming message
        can only confirm it once."""
        if op_key is None:
            op_key = self.data.setdefault("op", self.new_op_key())
        return f"op:{self.phone}:{op_key}"

    def local(self, when: datetime) -> datetime:
        return when.astimezone(self.zone)


class MenuModel:
    """The machine's model: the active state ids and the current message's turn."""

    def __init__(self, states: OrderedSet[str]) -> None:
        self.state: Any = states
        self.turn: Turn | None = None


Parser = Callable[[str, Turn], Any]
# An operation asks the ledger, says what it answered, and returns the outcome event.
Operation = Callable[..., Awaitable[str]]


class MenuMachine(StateMachine):
    """Behaviour shared by the agent and subscriber menus (no states of its own)."""

    # catalogue key prefix of this menu's screens: f"{PREFIX}{state_id}"
    PREFIX: ClassVar[str] = ""
    # How each free-input screen reads its text: state id -> parser (raises Invalid).
    PARSERS: ClassVar[dict[str, Parser]] = {}
    # Where a valid input is kept: state id -> data key.
    KEEP: ClassVar[dict[str, str]] = {}
    # The operations the machine may ask for (``Turn.call``): name -> operation.
    OPERATIONS: ClassVar[dict[str, Operation]] = {}
    # Screens that confirm a money operation: entering one makes the operation's key.
    CONFIRMS: ClassVar[frozenset[str]] = frozenset()

    model: MenuModel

    @property
    def turn(self) -> Turn:
        turn = self.model.turn
        assert turn is not None, "a menu step needs its turn"
        return turn

    # -- screens ------------------------------------------------------------------------

    def screen_params(self, state_id: str) -> dict[str, Any]:
        return {}

    def show(self, state_id: str) -> None:
        self.turn.say(f"{self.PREFIX}{state_id}", **self.screen_params(state_id))

    def on_enter_state(self, state: Any) -> None:
        if not state.is_atomic or state.id == "idle":
            return
        if state.initial and state.parent is not None and state.parent.id == "session":
            self.turn.data.clear()  # the main menu forgets every input
        if state.id in self.CONFIRMS:
            self.turn.data["op"] = Turn.new_op_key()
        self.show(state.id)

    # -- guards ------------------------------------------------------------------------

    def pick_1(self, text: str) -> bool:
        return text == "1"

    def pick_2(self, text: str) -> bool:
        return text == "2"

    def pick_3(self, text: str) -> bool:
        return text == "3"

    def pick_4(self, text: str) -> bool:
        return text == "4"

    def _parse(self, text: str, state_id: str) -> Any:
        return self.PARSERS[state_id](text, self.turn)

    def valid(self, text: str, source: Any) -> bool:
        try:
            self._parse(text, source.id)
        except Invalid:
            return False
        return True

    # -- actions -------------------------------------------------------------------------

    def keep(self, text: str, source: Any) -> None:
        self.turn.data[self.KEEP[source.id]] = self._parse(text, source.id)

    def invalid(self, text: str, source: Any) -> None:
        try:
            self._parse(text, source.id)
            reason = "reason_bad_choice"
        except Invalid as exc:
            reason = exc.reason
        self.turn.say(reason)
        self.show(source.id)

    def bad_choice(self, source: Any) -> None:
        self.turn.say("reason_bad_choice")
        self.show(source.id)

    def reshow(self, source: Any) -> None:
        self.show(source.id)

    def goodbye(self) -> None:
        self.turn.say("goodbye")


class MachinePool:
    """At most ``size`` instances of one menu class, reused across messages (see the module
    notes). A step waits for a free instance rather than build one more (building costs about
    ten steps). The machines are synchronous, so a step never yields to the event loop and one
    instance serves a whole worker; the bound matters only if a machine ever gets an async
    callback (python-statemachine's async engine yields inside every step)."""

    def __init__(self, machine: type[MenuMachine], size: int = 64) -> None:
        self.machine = machine
        self.size = size
        self._idle: list[MenuMachine] = []
        self._free = asyncio.Semaphore(size)
        self.built = 0
        self.state_ids = frozenset(str(value) for value in machine.states_map)

    def _borrow(self) -> MenuMachine:
        if self._idle:
            return self._idle.pop()
        self.built += 1
        return self.machine(MenuModel(OrderedSet(["idle"])))

    def valid_configuration(self, states: tuple[str, ...]) -> bool:
        return bool(states) and all(state in self.state_ids for state in states)

    async def step(
        self, states: tuple[str, ...], event: str, turn: Turn, text: str = ""
    ) -> tuple[str, ...]:
        """Restore the machine at ``states`` (no entry action runs), send one event, run the
        operation the step asked for (outside the machine: it may wait on the ledger) and send
        its outcome, until no operation is asked for; return the configuration it ends in."""
        while True:
            async with self._free:
                states = self._send(states, event, turn, text)
            if turn.pending is None:
                return states
            (name, args), turn.pending = turn.pending, None
            event, text = await self.machine.OPERATIONS[name](turn, **args), ""

    def _send(self, states: tuple[str, ...], event: str, turn: Turn, text: str) -> tuple[str, ...]:
        machine = self._borrow()
        machine.model.turn = turn
        machine.model.state = OrderedSet(states) if len(states) > 1 else states[0]
        try:
            machine.send(event, text=text)
            after = tuple(str(value) for value in machine.configuration_values)
        except BaseException:
            machine.model.turn = None
            raise  # the instance is dropped: its engine may hold a half-run step
        machine.model.turn = None
        self._idle.append(machine)
        return after

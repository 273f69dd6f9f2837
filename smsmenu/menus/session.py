"""What the engine keeps for a phone between two messages, and its JSON form. Pure.

A session holds the menu it is in (``agent`` or ``subscriber``), the active state ids of the
menu machine (outermost first, as python-statemachine keeps them for compound states), the
inputs collected so far, when the dialogue last moved, and what outlives a dialogue: a pending
shortcut confirmation (``CS`` and the duplicate guard ask for ``Y <pin>``). The guard itself
asks the ledger, which knows every recharge, whatever became of the session.

It never holds a password: the one dialogue that needs a password across messages (changing a
password: old, new, new again) keeps it sealed (``menus.sealing``), never in clear.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from smsmenu.ledger.api import Kind

IDLE: tuple[str, ...] = ("idle",)
FORMAT = 2

JsonValue = Any


class CorruptSession(ValueError):
    """Stored bytes that are not a session of this format; the engine starts afresh."""


@dataclass(frozen=True)
class PendingRecharge:
    """The duplicate guard asked to confirm this shortcut recharge (``Y <pin>``)."""

    kind: Kind
    number: str
    amount_fen: int
    notify: str | None
    expires: float  # epoch seconds
    key: str  # the confirmation's own operation key


@dataclass(frozen=True)
class PendingRetry:
    """``CS`` asked to confirm running this failed recharge again (``Y <pin>``)."""

    tx_id: int
    number: str
    amount_fen: int
    expires: float
    key: str


Pending = PendingRecharge | PendingRetry


def _pending_json(pending: Pending | None) -> dict[str, JsonValue] | None:
    if pending is None:
        return None
    op = "recharge" if isinstance(pending, PendingRecharge) else "retry"
    return {"op": op, **asdict(pending)}


def _pending_of(obj: JsonValue) -> Pending | None:
    if obj is None:
        return None
    values = dict(obj)
    op = values.pop("op")
    if op == "recharge":
        values["kind"] = Kind(values["kind"])
        return PendingRecharge(**values)
    if op == "retry":
        return PendingRetry(**values)
    raise CorruptSession(f"unknown pending operation {op!r}")


@dataclass
class Session:
    menu: str  # "agent" | "subscriber"
    agent_id: int | None = None
    states: tuple[str, ...] = IDLE
    data: dict[str, JsonValue] = field(default_factory=dict)
    touched: float = 0.0  # epoch seconds of the last menu step
    pending: Pending | None = None
    version: int = 0

    @property
    def in_dialogue(self) -> bool:
        return self.states != IDLE

    def live(self, now: float, timeout_s: float) -> bool:
        """In a dialogue that has not been idle for ``timeout_s``."""
        return self.in_dialogue and now - self.touched < timeout_s

    def end_dialogue(self) -> None:
        self.states = IDLE
        self.data = {}

    def prune(self, now: float) -> None:
        """Forget an expired pending confirmation."""
        if self.pending is not None and now >= self.pending.expires:
            self.pending = None

    @property
    def empty(self) -> bool:
        """Nothing worth keeping: no dialogue, nothing pending."""
        return not self.in_dialogue and self.pending is None

    def to_json(self) -> str:
        return json.dumps(
            {
                "f": FORMAT,
                "menu": self.menu,
                "agent": self.agent_id,
                "states": list(self.states),
                "data": self.data,
                "touched": self.touched,
                "pending": _pending_json(self.pending),
                "v": self.version,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Session:
        try:
            obj = json.loads(raw)
            if obj["f"] != FORMAT or obj["menu"] not in ("agent", "subscriber"):
                raise CorruptSession("unknown session format")
            agent = obj["agent"]
            states = tuple(str(item) for item in obj["states"])
            data = obj["data"]
            pending = _pending_of(obj["pending"])
            if (
                not states
                or not isinstance(data, dict)
                or not (agent is None or isinstance(agent, int))
            ):
                raise CorruptSession("malformed session")
            return cls(
                menu=obj["menu"],
                agent_id=agent,
                states=states,
                data=data,
                touched=float(obj["touched"]),
                pending=pending,
                version=int(obj["v"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, CorruptSession):
                raise
            raise CorruptSession(str(exc)) from exc

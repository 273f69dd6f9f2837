"""Scripted dialogues for the simulator: play a file of phone messages, check the replies.

A script is a text file, one step per line (``#`` starts a comment line)::

    timeout 5                      # seconds each expected reply may take (default 10)
    > 13800000001: 1               # the phone sends an SMS "1" to the service number
    >ussd 13800000001: *100#       # the phone opens (or continues) its USSD dialogue
    < 13800000001: 主菜单 1 天翼    # the phone's next message is exactly this text
    < 13800000001: 主菜单…          # ... starts with this (a trailing … or ...)
    < 13800000001: *余额            # ... contains this
    < 13800000001: ~^余额\\d+       # ... matches this regular expression (search)
    wait 0.5                       # pause

Expectations are checked per phone, in order: each ``<`` line takes that phone's next
received message. The first mismatch (or a reply that does not come in time) ends the run;
``run_script`` reports it with its line number.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from smsmenu.smpp.simulator import Received, Simulator

_STEP = re.compile(r"^(>ussd|>|<)\s*([^:\s]+)\s*:\s?(.*)$")


class ScriptError(ValueError):
    """The script itself is malformed (names the line)."""


@dataclass(frozen=True)
class Step:
    line: int
    kind: str  # 'send', 'ussd', 'expect', 'timeout', 'wait'
    phone: str = ""
    text: str = ""
    seconds: float = 0.0

    def matches(self, got: str) -> bool:
        pattern = self.text
        if pattern.startswith("~"):
            return re.search(pattern[1:], got) is not None
        if pattern.startswith("*"):
            return pattern[1:] in got
        for ellipsis in ("…", "..."):
            if pattern.endswith(ellipsis):
                return got.startswith(pattern[: -len(ellipsis)])
        return got == pattern


@dataclass(frozen=True)
class Outcome:
    ok: bool
    steps: int
    failure: str = ""


def parse(source: str) -> list[Step]:
    steps: list[Step] = []
    for number, raw in enumerate(source.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] in ("timeout", "wait"):
            try:
                seconds = float(words[1])
            except (IndexError, ValueError):
                raise ScriptError(f"line {number}: {words[0]} needs a number of seconds") from None
            steps.append(Step(number, words[0], seconds=seconds))
            continue
        match = _STEP.match(line)
        if match is None:
            raise ScriptError(f"line {number}: not a step: {line!r}")
        arrow, phone, text = match.groups()
        kind = {">": "send", ">ussd": "ussd", "<": "expect"}[arrow]
        steps.append(Step(number, kind, phone, text.rstrip()))
    return steps


def load(path: Path) -> list[Step]:
    return parse(path.read_text(encoding="utf-8"))


class _UssdPhones:
    """Per phone: the open dialogue's session number and sequence, or none."""

    def __init__(self) -> None:
        self.open: dict[str, tuple[int, int]] = {}
        self._next_session = 0

    def next(self, phone: str) -> tuple[int, int, bool]:
        if phone in self.open:
            session, sequence = self.open[phone]
            self.open[phone] = (session, sequence + 1)
            return session, sequence + 1, False
        self._next_session = (self._next_session + 1) % 256
        self.open[phone] = (self._next_session, 0)
        return self._next_session, 0, True

    def saw(self, message: Received) -> None:
        info = message.session_info
        if message.ussd_service_op is not None and info is not None and info.end:
            self.open.pop(message.phone, None)


async def run_script(
    sim: Simulator,
    steps: list[Step],
    *,
    open_op: int = 1,
    continue_op: int = 18,
    default_timeout_s: float = 10.0,
) -> Outcome:
    """Plays ``steps`` against ``sim`` (an ESME must be bound, or bind within the timeout)."""
    timeout_s = default_timeout_s
    cursor: dict[str, int] = {}
    ussd = _UssdPhones()
    done = 0
    for step in steps:
        if step.kind == "timeout":
            timeout_s = step.seconds
        elif step.kind == "wait":
            await asyncio.sleep(step.seconds)
        elif step.kind == "send":
            sim.send(step.phone, step.text)
        elif step.kind == "ussd":
            session, sequence, opening = ussd.next(step.phone)
            op = open_op if opening else continue_op
            sim.send_ussd(step.phone, step.text, op=op, session=session, sequence=sequence)
        else:
            index = cursor.get(step.phone, 0)
            try:
                got = await sim.next_message(step.phone, index, timeout_s)
            except TimeoutError:
                return Outcome(
                    False,
                    done,
                    f"line {step.line}: {step.phone} got no reply within {timeout_s:g}s "
                    f"(expected {step.text!r})",
                )
            cursor[step.phone] = index + 1
            ussd.saw(got)
            if not step.matches(got.text):
                return Outcome(
                    False,
                    done,
                    f"line {step.line}: {step.phone} expected {step.text!r}, got {got.text!r}",
                )
        done += 1
    return Outcome(True, done)

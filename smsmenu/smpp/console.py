"""The simulator's phone console: type as a phone, see what every phone receives.

Input lines::

    13800000001> 1              the phone sends the SMS "1" to the service number
    13800000001 ussd> *100#     the phone opens (or continues) its USSD dialogue

Every message a phone receives is printed as ``< PHONE from SOURCE: text``, with the USSD
operation, session number and end-of-session bit when it travelled inside a dialogue.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
from collections.abc import Callable

from smsmenu.smpp.script import _UssdPhones
from smsmenu.smpp.simulator import Received, Simulator

_LINE = re.compile(r"^\s*(\+?[0-9]{3,20})\s*(ussd)?\s*>\s?(.*)$", re.IGNORECASE)

HELP = "type  PHONE> text  (SMS)  or  PHONE ussd> text  (USSD); Ctrl-D ends input"


def parse_line(line: str) -> tuple[str, str, bool] | None:
    """(phone, text, is_ussd) of a console line, or None if it is not one."""
    match = _LINE.match(line.rstrip("\r\n"))
    if match is None or not match.group(3).strip():
        return None
    return match.group(1), match.group(3).strip(), match.group(2) is not None


def describe(message: Received) -> str:
    extra = ""
    info = message.session_info
    if message.ussd_service_op is not None:
        state = "end" if info is not None and info.end else "open"
        session = info.session if info is not None else "-"
        extra = f"  [ussd op={message.ussd_service_op} session={session} {state}]"
    elif message.parts > 1:
        extra = f"  [{message.parts} parts]"
    return f"< {message.phone} from {message.source}: {message.text}{extra}"


def as_json_line(message: Received) -> str:
    info = message.session_info
    return json.dumps(
        {
            "phone": message.phone,
            "source": message.source,
            "text": message.text,
            "parts": message.parts,
            "message_ids": list(message.message_ids),
            "ussd_service_op": message.ussd_service_op,
            "ussd_session": info.session if info is not None else None,
            "ussd_end": info.end if info is not None else None,
        },
        ensure_ascii=False,
    )


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """Lines of stdin on a queue (None at end of input), read by a daemon thread so that
    neither a TTY, a pipe nor a file blocks the event loop or its shutdown."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    return queue


async def run_console(
    sim: Simulator,
    out: Callable[[str], None],
    *,
    open_op: int = 1,
    continue_op: int = 18,
    as_json: bool = False,
    exit_at_eof: bool = False,
) -> None:
    """Serves the console until interrupted; at end of input it keeps the SMSC running, or
    returns (``exit_at_eof``). With ``as_json`` each received message is printed as one JSON
    object per line."""
    ussd = _UssdPhones()

    def received(message: Received) -> None:
        ussd.saw(message)
        out(as_json_line(message) if as_json else describe(message))

    sim.on_received = received
    if not as_json:
        out(HELP)
    lines = _stdin_lines(asyncio.get_running_loop())
    while (line := await lines.get()) is not None:
        parsed = parse_line(line)
        if parsed is None:
            if line.strip() and not as_json:
                out(f"? {HELP}")
            continue
        phone, text, is_ussd = parsed
        if is_ussd:
            session, sequence, opening = ussd.next(phone)
            sim.send_ussd(
                phone,
                text,
                op=open_op if opening else continue_op,
                session=session,
                sequence=sequence,
            )
        else:
            sim.send(phone, text)
    if exit_at_eof:
        if not as_json:
            out("end of input")
        return
    if not as_json:
        out("end of input: the simulator keeps serving until interrupted")
    await asyncio.Event().wait()

"""Menu commands (SPEC §12): ``smsmenu chat`` and ``smsmenu menu graph``.

``chat --phone N`` talks to the menus in-process as phone N, without SMPP: the settings'
database, the in-process session store, the real engine. After each reply it shows what the
ledger queued in the outbox meanwhile (result notices and receipts, for any phone).
``menu graph`` writes a diagram of each menu machine.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from smsmenu.cli import command_settings, emit, fail, json_option, startup_errors
from smsmenu.digits import is_digits


@click.command("chat")
@click.option("--phone", required=True, help="The phone number to talk as.")
@json_option
def chat(phone: str, as_json: bool) -> None:
    """Talk to the menus as PHONE: one message per line, until end of input."""
    if not is_digits(phone):
        fail(f"--phone {phone!r} is not a phone number")
    from smsmenu.app import build_menu_engine
    from smsmenu.app_ledger import close_ledger, open_ledger
    from smsmenu.ledger.outbox import Outbox
    from smsmenu.menus.store import InProcessStore
    from smsmenu.messages import Inbound

    settings = command_settings()
    interactive = sys.stdin.isatty() and not as_json

    async def main() -> None:
        ledger = await open_ledger(settings)
        store = InProcessStore()  # chat is one process: never the shared Redis sessions
        engine = build_menu_engine(settings, ledger, store)
        outbox = Outbox(ledger.engine, ledger.clock)
        seen = max((row.id for row in await outbox.rows(limit=1_000_000)), default=0)
        try:
            while True:
                if interactive:
                    click.echo(f"{phone}> ", nl=False)
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    break
                text = line.rstrip("\n")
                if not text.strip():
                    continue
                inbound = Inbound(phone, settings.service_number, text)
                replies = await engine.answer(inbound)
                queued = await outbox.rows(after_id=seen)
                if queued:
                    seen = queued[-1].id
                turn: dict[str, Any] = {
                    "input": text,
                    "replies": [reply.text for reply in replies],
                    "outbox": [
                        {"destination": row.destination, "text": row.text} for row in queued
                    ],
                }
                emit(as_json, turn, _chat_text)
        finally:
            await store.aclose()
            await close_ledger(ledger)

    with startup_errors(settings):
        asyncio.run(main())


def _chat_text(turn: dict[str, Any]) -> str:
    lines = [*turn["replies"]]
    lines += [f"[outbox → {row['destination']}] {row['text']}" for row in turn["outbox"]]
    return "\n".join(lines) if lines else "(no direct reply)"


@click.group("menu")
def menu() -> None:
    """The menu state machines."""


@menu.command("graph")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to write the diagrams to.",
)
@json_option
def graph(out: Path, as_json: bool) -> None:
    """Write a diagram of each menu: .dot always; .png and .svg when graphviz is installed."""
    from statemachine.contrib.diagram import DotGraphMachine

    from smsmenu.menus.agent import AgentMenu
    from smsmenu.menus.subscriber import SubscriberMenu

    out.mkdir(parents=True, exist_ok=True)
    rendered = shutil.which("dot") is not None
    files: list[str] = []
    for name, machine in (("agent_menu", AgentMenu), ("subscriber_menu", SubscriberMenu)):
        dot = DotGraphMachine(machine)()  # type: ignore[no-untyped-call]
        path = out / f"{name}.dot"
        path.write_text(dot.to_string(), encoding="utf-8")
        files.append(str(path))
        if rendered:
            for fmt in ("png", "svg"):
                target = out / f"{name}.{fmt}"
                dot.write(str(target), format=fmt)
                files.append(str(target))
    result = {"files": files, "rendered": rendered}

    def human(value: dict[str, Any]) -> str:
        lines = [f"wrote {path}" for path in value["files"]]
        if not value["rendered"]:
            lines.append("graphviz 'dot' is not installed: wrote .dot files only (no .png/.svg)")
        return "\n".join(lines)

    emit(as_json, result, human)

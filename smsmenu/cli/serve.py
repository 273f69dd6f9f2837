"""``smsmenu serve`` (the server, from config/ and SMSMENU_*) and ``smsmenu demo`` (everything
in one process on a fresh SQLite file, with the simulator's phone console or a script)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from smsmenu.cli import (
    command_settings,
    emit,
    fail,
    json_option,
    safe_url,
    startup_errors,
)
from smsmenu.cli.logs import configure_logging

log = logging.getLogger("smsmenu.server")
T = TypeVar("T")


@click.command("serve")
@click.option("--status-interval", type=float, default=None, help="Seconds between status lines.")
@click.option("--web", "with_web", is_flag=True, help="Serve the web pages and the API too.")
@click.option("--web-host", default="127.0.0.1", show_default=True)
@click.option("--web-port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@json_option
def serve(
    status_interval: float | None, with_web: bool, web_host: str, web_port: int, as_json: bool
) -> None:
    """Run the server: bind to the SMSC, answer the menus, send the outbox.

    Settings come from config/settings.toml and SMSMENU_* variables. SIGTERM or SIGINT stops
    it cleanly: no new message is taken, sends in flight finish, then it unbinds. ``--json``
    writes the log as JSON lines. ``--web`` serves the web pages and the HTTP API from the
    same process (as ``smsmenu web`` does)."""
    from smsmenu.app import run_server, web_part

    settings = command_settings()
    if status_interval is not None:
        settings = settings.model_copy(update={"status_interval_s": status_interval})
    path = Path(settings.log_file) if settings.log_file else None
    configure_logging(settings.log_level, as_json, settings.zone, path=path)

    async def main() -> None:
        stop = stop_on_signals()
        log.info(
            "starting: database=%s redis=%s smsc=%s:%d system_id=%s",
            safe_url(settings.database_url),
            safe_url(settings.redis_url) or "-",
            settings.smsc_host,
            settings.smsc_port,
            settings.smsc_system_id,
        )  # the SMSC password is never logged
        async with contextlib.AsyncExitStack() as parts:
            server = await parts.enter_async_context(run_server(settings))
            if with_web:
                await parts.enter_async_context(
                    web_part(settings, server.ledger, web_host, web_port)
                )
            await stop.wait()
            log.info("signal received: stopping")

    try:
        with startup_errors(settings):
            run_loop(main())
    except OSError as exc:
        fail(f"cannot start: {exc}")


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call it inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run the server's event loop: uvloop's where it is installed (Linux, macOS), else
    asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


# ---- demo -------------------------------------------------------------------------------------

AGENT_PHONE = "13800000001"
TRADE_PIN = "135790"
MGMT_PIN = "246801"
OPERATOR = ("demo", "demo-supervisor")  # the demo's operator account (name, password)
SUBSCRIBERS: list[tuple[str, str, str, int, str]] = [
    # number, kind, billing, balance (fen), what it is for
    ("13900000002", "mobile", "prepaid", 500, "mobile prepaid (receipts go to it)"),
    ("13900000003", "mobile", "prepaid", 0, "mobile prepaid (use it as a notify number)"),
    ("02787654321", "fixed", "postpaid", -3000, "fixed line postpaid, owes 30.00元"),
    ("02787650000", "phs", "prepaid", 0, "PHS prepaid"),
    ("02787659999", "broadband", "postpaid", 0, "broadband (non-annual ADSL) postpaid"),
]

WHAT_TO_TYPE = """\
Type as a phone (PHONE> text), e.g. the menu path of a recharge to a mobile:
  13800000001> 1              any text opens the main menu
  13800000001> 1              1 天翼
  13800000001> 1              1 空中充值
  13800000001> 1              1 充值
  13800000001> 2              2 C网手机
  13800000001> 13900000002    the number
  13800000001> 50             the amount (yuan)
  13800000001> 135790         the trade password confirms: result to the agent,
                              receipt to 13900000002
Shortcuts (one SMS, no menu):
  13800000001> CZ 1 02787654321 100 135790 13900000003   fixed line; receipt to the notify number
  13800000001> YE 135790                                 balance
USSD:   13800000001 ussd> *100#     then  13800000001 ussd> 1  ...
Others: 13900000002> 1              a subscriber's self-service menu
In every menu: 0 back, 00 main menu, # end. Ctrl-D (end of input) quits."""


async def seed_demo(ledger: Any) -> Any:
    """The demo's agent, subscribers and operator account (a fresh database)."""
    from smsmenu.ledger.api import Billing, Kind
    from smsmenu.web import operators
    from smsmenu.web.context import WebContext

    await ledger.add_subscriber(AGENT_PHONE, Kind.MOBILE, Billing.PREPAID, 0)
    for number, kind, billing, balance, _ in SUBSCRIBERS:
        await ledger.add_subscriber(number, Kind(kind), Billing(billing), balance)
    name, password = OPERATOR
    await operators.create(WebContext.of(ledger), name, operators.Role.SUPERVISOR, password)
    return await ledger.open_agent(AGENT_PHONE, TRADE_PIN, MGMT_PIN, 1000_00, None)


async def demo_web(parts: contextlib.AsyncExitStack, settings: Any, ledger: Any, port: int) -> str:
    """The demo's web part on ``port``, or on a free one if that is taken: its URL."""
    from smsmenu.app import web_part

    try:
        web = await parts.enter_async_context(web_part(settings, ledger, "127.0.0.1", port))
    except OSError:
        web = await parts.enter_async_context(web_part(settings, ledger, "127.0.0.1", 0))
    return str(web.url)


async def _settle(sim: Any, server: Any, within_s: float = 5.0) -> None:
    """At end of input: let the replies to what was typed arrive before leaving."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        busy = any(not d.acked.done() for d in sim.deliveries)
        idle = not busy and not server.sender.status().in_flight
        if idle and await server.outbox.due_count() == 0:
            return
        await asyncio.sleep(0.05)


@click.command("demo")
@click.option(
    "--port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Simulator port (0: a free one).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file to create (default: a new temp folder).",
)
@click.option(
    "--script",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Play this dialogue file (simulator script format), check it, exit (1 on a mismatch).",
)
@click.option("--reply-timeout", default=10.0, show_default=True, help="Script: per reply.")
@click.option(
    "--web-port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the web pages (a free one if taken).",
)
@json_option
def demo(
    db_path: Path | None,
    port: int,
    script: Path | None,
    reply_timeout: float,
    web_port: int,
    as_json: bool,
) -> None:
    """Everything in one process: a fresh SQLite ledger (schema upgraded, seeded), in-process
    sessions, the SMSC simulator with the SMPP link, menus and outbox sender bound to it, and
    the phone console (or ``--script``).

    The web pages and the HTTP API are served too (on ``--web-port``, with the sandbox
    payment provider); the demo prints their URL and logins."""
    from smsmenu.app import run_server
    from smsmenu.ledger.db import create_engine, upgrade
    from smsmenu.money import format_yuan
    from smsmenu.smpp import script as scripts
    from smsmenu.smpp.console import describe, run_console
    from smsmenu.smpp.simulator import Simulator

    base = command_settings()
    steps: list[scripts.Step] = []
    if script is not None:
        try:
            steps = scripts.load(script)
        except scripts.ScriptError as exc:
            fail(str(exc))
    folder = Path(tempfile.mkdtemp(prefix="smsmenu-demo-")) if db_path is None else None
    path = (folder / "demo.db") if folder is not None else db_path
    assert path is not None
    if path.exists():
        fail(f"{path} exists: the demo starts from a fresh database (choose another --db)")
    log_path = path.with_suffix(".log")
    configure_logging("INFO", False, base.zone, path=log_path)
    out = (lambda line: None) if as_json else click.echo

    async def main() -> scripts.Outcome | None:
        url = f"sqlite+aiosqlite:///{path.resolve()}"
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        sim = Simulator(
            port=port,
            system_id=base.smsc_system_id,
            password=base.smsc_password.get_secret_value(),
            service_number=base.service_number,
        )
        try:
            bound_port = await sim.start()
        except OSError as exc:
            fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
        settings = base.model_copy(
            update={
                "database_url": url,
                "redis_url": "",
                "smsc_host": "127.0.0.1",
                "smsc_port": bound_port,
                "outbox_poll_s": 0.2,
                "web_payment_provider": "sandbox",
            }
        )
        try:
            async with contextlib.AsyncExitStack() as parts:
                server = await parts.enter_async_context(run_server(settings))
                agent = await seed_demo(server.ledger)
                web_url = await demo_web(parts, settings, server.ledger, web_port)
                server.sender.nudge()
                await server.link.wait_bound(10)
                out("smsmenu demo: everything runs in this process.")
                out(f"  ledger    SQLite {path} (schema upgraded, seeded)")
                out(f"  log       {log_path}")
                out("  sessions  in-process")
                out(
                    f"  SMSC      simulator on 127.0.0.1:{bound_port}; the SMPP link is bound as "
                    f"{settings.smsc_system_id}; service number {settings.service_number}"
                )
                out(
                    f"  web       {web_url}  agents: {web_url}agent/login (agent id"
                    f" {agent.agent_id} + management password, or the bound phone + a code"
                    f" shown on the console); operators: {web_url}operator/login"
                    f" ({OPERATOR[0]} / {OPERATOR[1]}, supervisor); subscribers:"
                    f" {web_url}subscriber/login (e.g. {SUBSCRIBERS[0][0]} + a code shown on"
                    " the console)"
                )
                out(
                    f"Agent {agent.agent_id}: bound phone {agent.phone},"
                    f" trade password {TRADE_PIN}, management password {MGMT_PIN},"
                    f" float {format_yuan(agent.balance_fen)},"
                    f" commission {agent.commission_bp / 100:.2f}%"
                )
                # the opening confirmation SMS comes from the outbox: show it first
                opened = await sim.wait_for(agent.phone, 1, 10)
                if as_json:  # the setup as one object; the console stays text
                    emit(
                        True,
                        {
                            "database": str(path),
                            "log": str(log_path),
                            "smsc_port": bound_port,
                            "web": {
                                "url": web_url,
                                "operator": {"name": OPERATOR[0], "password": OPERATOR[1]},
                            },
                            "service_number": settings.service_number,
                            "agent": {
                                "agent_id": agent.agent_id,
                                "phone": agent.phone,
                                "trade_password": TRADE_PIN,
                                "mgmt_password": MGMT_PIN,
                                "balance_fen": agent.balance_fen,
                                "commission_bp": agent.commission_bp,
                            },
                            "subscribers": [
                                {"number": n, "kind": k, "billing": b, "balance_fen": f}
                                for n, k, b, f, _ in SUBSCRIBERS
                            ],
                        },
                        str,
                    )
                out("Subscribers:")
                for number, _kind, _billing, balance, what in SUBSCRIBERS:
                    out(f"  {number}  {what}, balance {format_yuan(balance)}")
                if script is not None:
                    return await scripts.run_script(
                        sim,
                        steps,
                        open_op=settings.ussd_op_open,
                        continue_op=settings.ussd_op_continue,
                        default_timeout_s=reply_timeout,
                    )
                out(WHAT_TO_TYPE)
                click.echo(describe(opened[0]))
                await run_console(
                    sim,
                    click.echo,
                    open_op=settings.ussd_op_open,
                    continue_op=settings.ussd_op_continue,
                    exit_at_eof=True,
                )
                await _settle(sim, server)
                return None
        finally:
            await sim.stop()

    try:
        with startup_errors(base):  # a damaged key file beside an existing --db
            outcome = run_loop(main())
    except KeyboardInterrupt:
        return
    if outcome is None:
        return
    if not outcome.ok:
        if as_json:
            emit(True, outcome, str)
        fail(outcome.failure)
    emit(as_json, outcome, lambda o: f"script passed: {o.steps} steps")


@click.group("secret")
def secret() -> None:
    """The SECRET_KEY every worker shares (SPEC §10)."""


@secret.command("new")
@json_option
def secret_new(as_json: bool) -> None:
    """Print a fresh random value for SMSMENU_SECRET_KEY (keep it out of the database)."""
    from smsmenu.keys import new_secret

    value = new_secret()
    emit(as_json, {"secret_key": value}, lambda v: str(v["secret_key"]))

"""``smsmenu simulator``: the SMSC simulator with its phone console or a scripted dialogue."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from smsmenu.cli import command_settings, emit, fail, json_option
from smsmenu.cli.logs import LogFormatter
from smsmenu.cli.passwords import password_option, read


@click.command("simulator")
@click.option("--port", default=2775, show_default=True, type=click.IntRange(0, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--system-id", default=None, help="Expected system_id (default: settings).")
@password_option(
    "--password", help="Expected password (left out: SMSMENU_SMSC_PASSWORD).", asked=False
)
@click.option(
    "--script",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Play this dialogue file and check the replies, then exit (non-zero on a mismatch).",
)
@click.option("--bind-timeout", default=30.0, show_default=True, help="Script: wait for a bind.")
@click.option("--reply-timeout", default=10.0, show_default=True, help="Script: per reply.")
@click.option("--no-console", is_flag=True, help="Serve without reading stdin.")
@click.option("--redeliver-after", default=5.0, show_default=True, help="Seconds to a redelivery.")
@json_option
def simulator(
    port: int,
    host: str,
    system_id: str | None,
    password: str | None,
    script: Path | None,
    bind_timeout: float,
    reply_timeout: float,
    no_console: bool,
    redeliver_after: float,
    as_json: bool,
) -> None:
    """The SMSC simulator: an SMPP server with a phone console (or a scripted dialogue)."""
    from smsmenu.smpp import script as scripts
    from smsmenu.smpp.console import run_console
    from smsmenu.smpp.simulator import Simulator

    settings = command_settings()
    if password == "-":
        (password,) = read(("--password", "SMSC password", password))
    steps: list[scripts.Step] = []
    if script is not None:
        try:
            steps = scripts.load(script)
        except scripts.ScriptError as exc:
            fail(str(exc))
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter("%(asctime)s %(name)s %(message)s", settings.zone))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    sim = Simulator(
        host=host,
        port=port,
        system_id=system_id or settings.smsc_system_id,
        password=password or settings.smsc_password.get_secret_value(),
        service_number=settings.service_number,
        redeliver_after_s=redeliver_after,
    )

    async def serve() -> scripts.Outcome | None:
        try:
            bound_port = await sim.start()
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        try:
            if script is None:
                banner = f"SMSC simulator on {host}:{bound_port} (system_id {sim.system_id})"
                click.echo(banner, err=as_json)
                if no_console:
                    await asyncio.Event().wait()
                await run_console(
                    sim,
                    click.echo,
                    open_op=settings.ussd_op_open,
                    continue_op=settings.ussd_op_continue,
                    as_json=as_json,
                )
                return None
            if not as_json:
                click.echo(f"SMSC simulator on {host}:{bound_port}: waiting for a bind", err=True)
            try:
                await sim.wait_bound(bind_timeout)
            except TimeoutError:
                fail(f"no ESME bound within {bind_timeout:g}s")
            return await scripts.run_script(
                sim,
                steps,
                open_op=settings.ussd_op_open,
                continue_op=settings.ussd_op_continue,
                default_timeout_s=reply_timeout,
            )
        finally:
            await sim.stop()

    outcome = asyncio.run(serve())
    if outcome is None:
        return
    if not outcome.ok:
        if as_json:
            emit(True, outcome, str)
        fail(outcome.failure)
    emit(as_json, outcome, lambda o: f"script passed: {o.steps} steps")

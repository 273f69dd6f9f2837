"""``smsmenu web`` (the web pages and the HTTP API, SPEC §9), ``smsmenu apikey`` (the API's
keys) and ``smsmenu operator`` (staff accounts of the operator's pages)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from smsmenu.cli import command_settings, emit, fail, json_option, local_time, startup_errors
from smsmenu.cli.passwords import password_option, read

if TYPE_CHECKING:  # types only: the web's modules are imported when a command runs
    from smsmenu.web.context import WebContext

T = TypeVar("T")


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@json_option
def web(host: str, port: int, as_json: bool) -> None:
    """Serve the web pages and the HTTP API (SPEC §9) on the ledger, without SMPP.

    One-time codes wait in the outbox until a ``smsmenu serve`` worker sends them. SIGTERM or
    SIGINT stops it."""
    from pathlib import Path

    from smsmenu.app import run_web
    from smsmenu.cli.logs import configure_logging
    from smsmenu.cli.serve import run_loop, stop_on_signals

    settings = command_settings()
    path = Path(settings.log_file) if settings.log_file else None
    configure_logging(settings.log_level, as_json, settings.zone, path=path)

    async def main() -> None:
        await run_web(settings, host, port, stop_on_signals())

    try:
        with startup_errors(settings):
            run_loop(main())
    except OSError as exc:
        fail(f"cannot start: {exc}")


def run_web_context(action: Callable[[WebContext], Awaitable[T]]) -> T:
    """Open the ledger, run ``action`` on the web's context, close it; a refusal is one line."""
    import asyncio

    from smsmenu.app_ledger import close_ledger, open_ledger
    from smsmenu.cli.logs import command_logging
    from smsmenu.ledger.api import Refusal
    from smsmenu.web.context import WebContext
    from smsmenu.web.refusals import WebRefusal, explain

    settings = command_settings()
    command_logging(settings)

    async def main() -> T:
        ledger = await open_ledger(settings)
        context = WebContext.of(ledger)
        try:
            return await action(context)
        except (Refusal, WebRefusal) as refusal:
            fail(f"refused ({refusal.rule.value}): {explain(context, refusal)}")
        finally:
            await close_ledger(ledger)

    with startup_errors(settings):
        return asyncio.run(main())


@click.group("apikey")
def apikey() -> None:
    """Keys of the HTTP API (SPEC §9): one per client, scoped, revocable."""


@apikey.command("create")
@click.option("--name", required=True, help="The client's name (unique).")
@click.option("--scope", required=True, help="operator, or agent:ID (that agent only).")
@json_option
def apikey_create(name: str, scope: str, as_json: bool) -> None:
    """Make a key: it is printed once and stored only hashed."""
    from smsmenu.web import apikeys

    key = run_web_context(lambda web: apikeys.create(web, name, scope))
    emit(as_json, {"name": name, "scope": scope, "key": key}, lambda v: str(v["key"]))


@apikey.command("list")
@json_option
def apikey_list(as_json: bool) -> None:
    """The clients' keys (never the keys themselves)."""
    from smsmenu.web import apikeys

    clients = run_web_context(apikeys.listed)
    zone = command_settings().zone
    rows: list[dict[str, Any]] = [
        {
            "name": c.name,
            "scope": c.scope,
            "created_at": c.created_at.astimezone(zone).isoformat(),
            "revoked": c.revoked_at is not None,
        }
        for c in clients
    ]
    emit(
        as_json,
        rows,
        lambda _: (
            "\n".join(
                f"{c.name}  {c.scope}  created {local_time(c.created_at, zone)}"
                + ("  revoked" if c.revoked_at else "")
                for c in clients
            )
            or "no keys"
        ),
    )


@apikey.command("revoke")
@click.option("--name", required=True)
@json_option
def apikey_revoke(name: str, as_json: bool) -> None:
    """Revoke a client's key: its calls are refused from now on."""
    from smsmenu.web import apikeys

    if not run_web_context(lambda web: apikeys.revoke(web, name)):
        fail(f"no live key named {name!r}")
    emit(as_json, {"name": name, "revoked": True}, lambda _: f"key {name} revoked")


@click.group("operator")
def operator() -> None:
    """Staff accounts of the operator's web pages (roles staff and supervisor)."""


@operator.command("create")
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice(["staff", "supervisor"]))
@password_option("--password", help="At least 10 characters.")
@json_option
def operator_create(name: str, role: str, password: str | None, as_json: bool) -> None:
    """Make a staff account (supervisors may also reverse recharges)."""
    from smsmenu.web import operators

    (password,) = read(("--password", "Password", password), confirm=True)
    view = run_web_context(lambda web: operators.create(web, name, operators.Role(role), password))
    emit(
        as_json,
        {"id": view.id, "name": view.name, "role": view.role.value},
        lambda _: f"operator {view.name} ({view.role.value}) created",
    )

"""A click group that imports a command's module only when that command is asked for.

The group knows each command by name, where it lives (``module:attribute``) and the first
paragraph of its help: enough for ``--help`` and for suggesting a name, with no module of a
command imported. ``smsmenu agent show`` imports ``smsmenu.cli.ledger`` and nothing of the
menus or SMPP.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import click


class LazyCommand(NamedTuple):
    """Where a command lives (``module:attribute``) and the first paragraph of its help."""

    target: str
    help: str


class LazyGroup(click.Group):
    """A group whose commands are ``LazyCommand``s, imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self._load(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def _load(self, name: str) -> click.Command:
        module, _, attribute = self.lazy[name].target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[name].target} is not a click command")
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.NoSuchCommand as exc:  # click suggests from the commands loaded so far
            raise click.NoSuchCommand(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their short help as click writes them; a lazy command's from the
        table, loaded or not."""
        listed = {name: click.Command(name, help=entry.help) for name, entry in self.lazy.items()}
        click.Group(commands={**self.commands, **listed}).format_commands(ctx, formatter)

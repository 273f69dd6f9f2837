"""The lazy root group: every command it names resolves and shows its help, it lists them as
click would list the real commands, and no help screen loads anything heavy (each checked in a
process of its own, with the real entry point)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from smsmenu.cli.lazy import LazyCommand, LazyGroup
from smsmenu.cli.main import COMMANDS, root
from tests.probe import HEAVY, loaded, within

ENTRY_POINT = {"smsmenu", "smsmenu.cli", "smsmenu.cli.lazy", "smsmenu.cli.main"}


def real(name: str) -> click.Command:
    command = root.get_command(click.Context(root), name)
    assert command is not None, name
    return command


def test_importing_the_entry_point_loads_no_command() -> None:
    modules, result = loaded()
    assert result.returncode == 0, result.stderr
    assert within(modules, "smsmenu") == ENTRY_POINT
    assert not within(modules, *HEAVY, "asyncio")


def test_help_loads_no_command() -> None:
    modules, result = loaded("--help")
    assert result.returncode == 0, result.stderr
    assert "Commands:" in result.stdout and "subscriber" in result.stdout
    assert within(modules, "smsmenu") == ENTRY_POINT
    assert not within(modules, *HEAVY, "asyncio")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_command_s_help_loads_its_module_and_nothing_heavy(name: str) -> None:
    modules, result = loaded(name, "--help")
    assert result.returncode == 0, result.stderr
    assert f" {name} [OPTIONS]" in result.stdout.splitlines()[0]
    assert COMMANDS[name].target.partition(":")[0] in modules
    assert not within(modules, *HEAVY)
    assert not within(modules, "smsmenu.app", "smsmenu.app_ledger", "smsmenu.menus", "smsmenu.smpp")


def test_every_command_and_subcommand_resolves_and_shows_its_help() -> None:
    def walk(group: click.Group, path: list[str]) -> list[list[str]]:
        paths = []
        for name in group.list_commands(click.Context(group)):
            command = group.get_command(click.Context(group), name)
            assert isinstance(command, click.Command), [*path, name]
            paths.append([*path, name])
            if isinstance(command, click.Group):
                paths += walk(command, [*path, name])
        return paths

    paths = walk(root, [])
    assert len(paths) > len(COMMANDS)  # the groups' commands too
    for path in paths:
        result = CliRunner().invoke(root, [*path, "--help"], prog_name="smsmenu")
        assert result.exit_code == 0, (path, result.output)
        assert f"Usage: smsmenu {' '.join(path)} [OPTIONS]" in result.output


def test_every_top_level_command_of_the_command_modules_is_in_the_table() -> None:
    modules = {target.partition(":")[0] for target, _ in COMMANDS.values()}
    commands = {
        f"{name}:{attribute}": value
        for name in modules
        for attribute, value in vars(importlib.import_module(name)).items()
        if isinstance(value, click.Command)
    }
    inside_a_group = {
        id(sub)
        for group in commands.values()
        if isinstance(group, click.Group)
        for sub in group.commands.values()
    }
    top_level = {
        target for target, command in commands.items() if id(command) not in inside_a_group
    }
    assert top_level == {entry.target for entry in COMMANDS.values()}


def test_the_table_holds_each_command_s_first_paragraph() -> None:
    assert root.list_commands(click.Context(root)) == sorted(COMMANDS)
    for name, entry in COMMANDS.items():
        command = real(name)
        assert command.help is not None, name
        assert entry.help == " ".join(command.help.partition("\n\n")[0].split()), name


@pytest.mark.parametrize("width", [40, 60, 80, 200])
def test_help_lists_the_commands_as_click_lists_the_real_ones(width: int) -> None:
    eager = click.Group(
        root.name,
        commands={name: real(name) for name in COMMANDS},
        params=root.params,
        help=root.help,
        callback=root.callback,
    )
    lazy_help = CliRunner().invoke(root, ["--help"], prog_name="smsmenu", terminal_width=width)
    eager_help = CliRunner().invoke(eager, ["--help"], prog_name="smsmenu", terminal_width=width)
    assert lazy_help.exit_code == eager_help.exit_code == 0
    assert lazy_help.output == eager_help.output


def test_a_mistyped_command_gets_a_suggestion_with_nothing_loaded() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from smsmenu.cli.main import main; main()", "agnt"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "smsmenu: No such command 'agnt'. Did you mean 'agent'?"


def test_a_target_that_is_not_a_command_is_refused() -> None:
    group = LazyGroup(lazy={"x": LazyCommand("smsmenu.cli:json_option", "Not a command.")})
    with pytest.raises(TypeError, match=r"smsmenu\.cli:json_option is not a click command"):
        group.get_command(click.Context(group), "x")

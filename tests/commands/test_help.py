"""Every command and option of plan/apply/test/state/status explains itself in --help."""

from __future__ import annotations

import click
import pytest

from engine.cli import cli


def commands():
    context = click.Context(cli)
    for name in ("plan", "apply", "test", "state", "status"):
        command = cli.get_command(context, name)
        yield name, command
        if isinstance(command, click.Group):
            for sub in command.list_commands(context):
                yield f"{name} {sub}", command.get_command(context, sub)


@pytest.mark.parametrize("name,command", list(commands()), ids=lambda value: value if isinstance(value, str) else "")
def test_every_command_and_option_has_help(name, command):
    assert command.help and len(command.help) > 20, name
    for parameter in command.params:
        if isinstance(parameter, click.Option):
            assert parameter.help, f"{name} {parameter.opts} has no help"

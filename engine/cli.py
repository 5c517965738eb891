"""The ``campaigns`` command: a thin click layer over the library.

Each subcommand lives in ``engine/commands/<name>.py`` and is imported only when
it runs (or when help lists it), so ``campaigns validate`` does not pay for the
database or HTTP stacks.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from engine import __version__
from engine.errors import CampaignsError

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "validate": "engine.commands.validate:validate",
    "schedule": "engine.commands.schedule:schedule",
    "plan": "engine.commands.plan:plan",
    "apply": "engine.commands.apply:apply",
    "test": "engine.commands.test:test",
    "state": "engine.commands.state:state",
    "status": "engine.commands.status:status",
    "run": "engine.commands.run:run",
    "report": "engine.commands.report:report",
    "preview": "engine.commands.preview:preview",
    "users": "engine.commands.users:users",
    "pause": "engine.commands.control:pause",
    "resume": "engine.commands.control:resume",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attribute = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="campaigns")
def cli() -> None:
    """Campaigns as code: validate, plan, apply and deliver notification tasks kept in git."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: user-facing errors become one line on stderr, never a traceback."""
    try:
        cli.main(args=argv, prog_name="campaigns", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as problem:
        problem.show()
        sys.exit(problem.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except CampaignsError as problem:
        click.echo(f"Error: {problem}", err=True)
        sys.exit(problem.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except Exception as bug:
        if os.environ.get("CAMPAIGNS_DEBUG"):
            raise
        click.echo(
            f"Internal error: {type(bug).__name__}: {bug}\n"
            "This is a bug in campaigns; set CAMPAIGNS_DEBUG=1 to see the traceback and please report it.",
            err=True,
        )
        sys.exit(1)

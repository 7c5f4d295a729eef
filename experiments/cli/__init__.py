"""The ``synctwin`` command line.

User errors (an unknown scenario, a bad YAML field, an unknown strategy, a
malformed snapshot) end with a one-paragraph message and exit code 2, never a
traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.text import Text

# Every command module registers its commands on the apps on import (help lists them in
# this order).
# isort: off
from experiments.cli import run, baselines, bench, policy, calibrate, dashboard, train  # noqa: F401
from experiments.cli import feedback, alerts  # noqa: F401
from experiments.cli import replay  # noqa: F401

# isort: on
from experiments.cli.app import app
from experiments.cli.console import err_console

__all__ = ["app", "main"]


def main() -> None:
    """The console entry point: usage mistakes (a bad flag or value) are one line too."""
    try:  # typer vendors its own click since 0.22; older ones use click itself
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover
        import click.exceptions as click_errors  # type: ignore[no-redef]

    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as err:
        sys.stdout.write(err.format_message() + "\n")
        raise SystemExit(2) from None
    except click_errors.UsageError as err:
        where = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
        err_console.print(
            Text("error: ", style="bold red") + Text(err.format_message() + where),
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(2) from None
    except click_errors.ClickException as err:
        err.show()
        raise SystemExit(err.exit_code) from None
    except typer.Abort:
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)

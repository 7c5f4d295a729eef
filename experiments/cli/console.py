"""How the ``synctwin`` command talks to its user: consoles, errors, warnings, paths.

Every command shares these rules:

- A mistake is one line, ``error: ...``, and exit code 2, before any work; never a
  traceback. :func:`user_errors` turns the project's own error types into that line.
- Messages are printed literally: user- and library-provided text (a regex such as
  ``^[a-z0-9]*$``, a path ``[red]x.yaml``) is never read as rich markup.
- Paths are the user's (:mod:`experiments.paths`): relative to the working directory,
  ``~`` expanded, checked before any work, shown the way the user can paste them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


def fail(message: str, hint: str | None = None) -> NoReturn:
    """Print ``error: MESSAGE`` (and an optional hint line) literally; exit with code 2."""
    text = Text("error: ", style="bold red") + Text(message)
    if hint:
        text += Text("\n" + hint)
    err_console.print(text, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def warn(message: str) -> None:
    """Print ``warning: MESSAGE`` literally on stderr."""
    text = Text("warning: ", style="bold yellow") + Text(message)
    err_console.print(text, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """Print a line on stdout literally (paths and names are never rich markup)."""
    console.print(Text(message), highlight=False, soft_wrap=True)


def _error_line(error: Mapping[str, Any]) -> str:
    """One pydantic error as ``  - field.path: message`` (no empty path, no class prefix)."""
    msg = str(error["msg"]).removeprefix("Value error, ")
    where = ".".join(map(str, error["loc"]))
    return f"  - {where}: {msg}" if where else f"  - {msg}"


def _user_error_types() -> tuple[type[BaseException], ...]:
    from agents import StrategyError
    from agents.threshold import TunedFileError
    from experiments.comparison.store import CompareDirError
    from experiments.paths import OutputPathError
    from policies.bundle import BundleError
    from twin.model import SnapshotError
    from twin.scenario import ScenarioError

    return (
        ScenarioError,
        StrategyError,
        TunedFileError,
        SnapshotError,
        BundleError,
        CompareDirError,
        OutputPathError,
        FileNotFoundError,
    )


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the project's user-facing errors into one clear message and exit code 2."""
    from pydantic import ValidationError

    try:
        yield
    except _user_error_types() as err:
        fail(str(err))
    except ValidationError as err:
        fail("invalid input:\n" + "\n".join(_error_line(e) for e in err.errors()))


def warn_untuned(tuning: dict[tuple[str, str], str]) -> None:
    """Tell the user, on stderr, of every baseline whose thresholds are not tuned for its
    scenario (an untuned ``threshold`` can be far from its best: an unfair yardstick)."""
    for (scenario, strategy), label in tuning.items():
        if label == "untuned":
            warn(
                f"{strategy} on {scenario!r} runs with untuned default thresholds (no tuned "
                f"file for this scenario); tune them with `synctwin tune-baseline --scenario "
                f"FILE --out TUNED.json` and use {strategy.split(':')[0]}:TUNED.json"
            )
        elif label == "stale":
            warn(
                f"{strategy} on {scenario!r} uses thresholds tuned for an earlier version of "
                "the scenario; re-run `synctwin tune-baseline`"
            )

"""The ``synctwin`` Typer apps that command modules register on, and what they share.

Its own module so command modules (``cli``, ``train_cli``, ``dashboard_cli``) import it
without importing each other: no import cycle between the CLI's files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from experiments.paths import user_path

app = typer.Typer(
    name="synctwin",
    help="SyncTwin: a multi-agent RL digital twin of an operation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks: print numbers and write JSON.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
experiment_app = typer.Typer(help="Documented experiments.", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


def write_bench_json(result: dict[str, Any], out: Path, as_json: bool) -> bool:
    """Write a benchmark's result to ``out``; with ``--json`` also print it and return True
    (the caller then prints no table)."""
    text = json.dumps(result, indent=2) + "\n"
    out = user_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if as_json:
        sys.stdout.write(text)
    return as_json

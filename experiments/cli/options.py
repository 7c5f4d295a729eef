"""Options several commands share (one definition, one help text)."""

from __future__ import annotations

from typing import Annotated

import typer

ScenarioOpt = Annotated[
    str, typer.Option("--scenario", "-s", help="built-in scenario name or a YAML file")
]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="random seed (same seed, same run)")]


WorkersOpt = Annotated[
    int | None, typer.Option(min=1, help="processes in parallel (default: all cores)")
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        help="HOST:PORT of a running Ray cluster to fan the runs out over "
        "(start one with `ray start --head`); default: local processes"
    ),
]
RunsPerTaskOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="runs shipped per task (default: sized so a task takes >= 0.25 s, "
        "from the first run's time)",
    ),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="replace the results already in --out")
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="continue the run in --out (same options)")
]


def split_list(text: str) -> list[str]:
    """The non-empty, stripped parts of a comma-separated option."""
    return [part.strip() for part in text.split(",") if part.strip()]

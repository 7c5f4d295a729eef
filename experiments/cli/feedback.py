"""``synctwin feedback-report LOG``: which advice the floor accepts, from a decision log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from experiments.cli.app import app
from experiments.cli.console import fail, say
from experiments.paths import user_path


@app.command("feedback-report")
def feedback_report(
    log: Annotated[Path, typer.Argument(help="the server's decision log (synctwin serve --log)")],
) -> None:
    """Accepted and rejected feedback per kind of advice (lend, priority, hold, ...)."""
    from rich.console import Console

    from policies.feedback import feedback_report as tally

    path = user_path(log)
    if not path.is_file():
        fail(f"no decision log at {log}")
    try:
        report = tally(path)
    except (OSError, UnicodeDecodeError) as err:
        fail(f"cannot read {log}: {err}")
    table = Table(title=f"Feedback by kind of advice ({log})")
    for column in ("advice", "recommended", "answered", "accepted", "rejected", "accepted %"):
        table.add_column(column, justify="left" if column == "advice" else "right")
    for k in report.kinds:
        share = k.acceptance
        pct = f"{share.mean:.0%} ({share.low:.0%}-{share.high:.0%})" if k.answered else "-"
        table.add_row(
            k.kind, str(k.recommendations), str(k.answered), str(k.accepted), str(k.rejected), pct
        )
    Console().print(table)
    if report.unmatched_feedback:
        say(f"{report.unmatched_feedback} feedback line(s) name a recommendation not in the log")
    if report.bad_lines:
        say(f"{report.bad_lines} line(s) skipped: not a recommendation or feedback record")

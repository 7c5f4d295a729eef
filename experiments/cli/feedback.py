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


@app.command("export-log")
def export_log(
    store: Annotated[
        str,
        typer.Option(help="the server's store: sqlite:///PATH (or a path), postgresql://..."),
    ],
    out: Annotated[Path, typer.Option(help="the JSONL file to write", callback=user_path)],
) -> None:
    """Write the decision log (JSON Lines) from the server's store, atomically.

    Every recommendation and feedback the store holds, in time order; what
    ``synctwin feedback-report`` reads.
    """
    from policies.store import StoreError, StoreUrlError, open_store, parse_store_url
    from policies.store.export import export_jsonl

    try:
        url = parse_store_url(store)
        if url.kind == "sqlite" and url.path is None:
            fail("an in-memory store holds nothing to export: name a file or a database")
        if url.kind == "sqlite" and url.path is not None and not url.path.is_file():
            fail(f"no store at {url.path}")
        opened = open_store(url)
    except (StoreUrlError, StoreError) as err:
        fail(str(err))
    try:
        summary = export_jsonl(opened, out)
    except (StoreError, OSError) as err:
        fail(f"cannot export {url.safe} to {out}: {err}")
    finally:
        opened.close()
    say(
        f"wrote {summary.recommendations} recommendation(s) and {summary.feedback} feedback "
        f"line(s) to {out}"
    )

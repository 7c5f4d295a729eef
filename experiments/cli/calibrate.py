"""``synctwin calibrate``: fit a scenario to an event log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from experiments.cli.app import app
from experiments.cli.console import console, fail, say, user_errors
from experiments.paths import check_output_file, user_path

# --------------------------------------------------------------------------- calibrate


class _PlainUsage(TyperCommand):
    """Usage ``calibrate [OPTIONS] EVENTS`` (Typer would write a required argument ``{EVENTS}``)."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


@app.command("calibrate", cls=_PlainUsage)
def calibrate_cmd(
    events: Annotated[
        Path,
        typer.Argument(
            metavar="EVENTS",
            help="event log: CSV, CSV.gz or Parquet (columns: README, section Calibration)",
            show_default=False,
            callback=user_path,
        ),
    ],
    out: Annotated[Path, typer.Option(help="scenario YAML to write", callback=user_path)],
    base: Annotated[str, typer.Option(help="scenario for what the log does not fit")] = "default",
    roster: Annotated[
        Path | None, typer.Option(help="roster CSV: shifts, headcount", callback=user_path)
    ] = None,
    attendance: Annotated[
        Path | None, typer.Option(help="attendance CSV: absences", callback=user_path)
    ] = None,
    equipment: Annotated[
        Path | None, typer.Option(help="equipment CSV: breakdowns", callback=user_path)
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="fit report: .html or .md", callback=user_path)
    ] = None,
    validate: Annotated[
        bool, typer.Option(help="fit on the first days, compare the twin with the last ones")
    ] = False,
    holdout_days: Annotated[
        int | None, typer.Option(min=1, help="days held out (default: a quarter)")
    ] = None,
    validate_seeds: Annotated[int, typer.Option(min=2, help="twin runs for --validate")] = 8,
) -> None:
    """Fit a scenario to an operation's event log (method: experiments/calibration/fit.py)."""
    from experiments.calibration.data import CalibrationError
    from experiments.calibration.fit import calibrate_inputs, load_inputs
    from experiments.calibration.output import scenario_name, write_scenario
    from experiments.calibration.validation import holdout_split
    from experiments.calibration.validation import validate as run_validation
    from experiments.reporting.calibration import console_summary, write_report
    from twin.scenario import load_scenario

    with user_errors():
        sc = load_scenario(base)
        check_output_file(out)
        if report is not None:
            check_output_file(report, "--report")
    try:
        inputs = load_inputs(events, sc, roster, attendance, equipment)
        windows = holdout_split(inputs.table, holdout_days) if validate else (None, None)
        cal = calibrate_inputs(inputs, sc, scenario_name(out), windows[0])
        write_scenario(cal, out)
    except CalibrationError as err:
        fail(str(err))
    checked = None
    if validate and windows[0] is not None and windows[1] is not None:
        checked = run_validation(cal.scenario, inputs.table, *windows, seeds=validate_seeds)
    for part in console_summary(cal, checked):
        console.print(part, highlight=False)
    say(f"wrote {out} (loads back as a valid scenario)")
    if report is not None:
        say(f"wrote {write_report(cal, report, checked)}")

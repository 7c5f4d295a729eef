"""``synctwin replay LOG_DIR --server URL --site S``: shadow mode on a recorded log.

Streams ``LOG_DIR/floor_events.jsonl`` into a running server's site at N times real
time (or as fast as it takes them), printing the site's alerts as they arrive, then a
summary of what the server made of the events. Every mistake (a bad line in the log,
an unknown site, a refused key, no server) is one line and exit code 2.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from experiments.cli.app import app
from experiments.cli.console import console, err_console, fail, say, warn
from experiments.paths import user_path


def parse_speed(text: str) -> float | None:
    """``--speed``: a positive number of times real time, or ``max`` (``None``)."""
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        fail(f"--speed {text!r}: expected a positive number (60: an hour in a minute) or 'max'")
    return value


def alert_line(alert: dict[str, Any]) -> Text:
    """``HH:MM sector  message``: when the alert was raised, where, and what it says."""
    raised = str(alert.get("raised_at", ""))
    when = raised[11:16] if len(raised) >= 16 else raised
    text = Text("alert ", style="bold yellow") + Text(f"{when} {alert.get('sector', '?')}: ")
    return text + Text(str(alert.get("message", "")))


def outcome_line(alert: dict[str, Any], outcome: dict[str, Any]) -> Text:
    """``outcome HH:MM sector risk: happened (observed N)``: what came of an alert."""
    raised = str(alert.get("raised_at", ""))
    happened = outcome.get("happened")
    what = "happened" if happened else "did not happen" if happened is not None else "known"
    observed = f" (observed {outcome['observed']:g})" if "observed" in outcome else ""
    if len(raised) >= 16:  # an alert shown by this replay
        which = f"the {raised[11:16]} {alert.get('sector', '?')} {alert.get('risk', '')} alert"
    else:  # raised before this replay began
        which = f"alert {alert.get('id', '?')}"
    return Text("outcome ", style="bold") + Text(f"of {which}: {what}{observed}")


@app.command("replay")
def replay(
    log_dir: Annotated[
        Path,
        typer.Argument(
            help="a folder with floor_events.jsonl (`synctwin simulate --log-events DIR`)",
            callback=user_path,
        ),
    ],
    server: Annotated[str, typer.Option(help="the server's URL, e.g. http://127.0.0.1:8000")],
    site: Annotated[str, typer.Option(help="the site to feed (serve --site NAME=SCENARIO)")],
    speed: Annotated[
        str, typer.Option(help="times real time (60: an hour of the log a minute), or max")
    ] = "60",
    until: Annotated[
        str | None,
        typer.Option(help="stop at this time of the log's first day (HH:MM), or a timestamp"),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="most events per request")] = 1000,
    api_key: Annotated[str | None, typer.Option(help="X-API-Key, if the server needs one")] = None,
    linger: Annotated[
        float,
        typer.Option(
            min=0,
            help="seconds to keep following alerts after the last event (the server "
            "assesses risks a little behind the events)",
        ),
    ] = 10.0,
) -> None:
    """Shadow mode: stream a recorded event log into a live site and print its alerts.

    Every line of the log is checked before anything is sent. Events go in batches,
    paced by the log's timestamps; a busy server (503) gets the batch again after a
    pause. Ids make resending safe: a second replay of the same log is all duplicates.
    """
    from experiments.replay.alerts import AlertListener
    from experiments.replay.client import ReplayError, SiteClient
    from experiments.replay.log import LogError, read_log, until_minute
    from experiments.replay.stream import Summary, stream

    pace = parse_speed(speed)
    if not server.startswith(("http://", "https://")):
        fail(f"--server {server!r}: expected a URL such as http://127.0.0.1:8000")
    try:
        log = read_log(log_dir)
        count = log.until(until) if until is not None else len(log.events)
    except LogError as err:
        fail(str(err))
    if count == 0:
        fail(f"--until {until!r}: no event of {log.path} comes before it")
    stop = f" until {log.clock(until_minute(until, log.zero))}" if until is not None else ""
    with SiteClient(server, site, api_key) as client:
        try:
            client.post([])  # the site exists and takes our key, before any event goes
        except ReplayError as err:
            fail(str(err))
        shown: dict[str, dict[str, Any]] = {}

        def on_alert(alert: dict[str, Any]) -> None:
            shown[str(alert.get("id"))] = alert
            console.print(alert_line(alert), highlight=False, soft_wrap=True)
            if alert.get("outcome"):  # known before the alert reached us
                on_outcome(str(alert.get("id")), alert["outcome"])

        def on_outcome(alert_id: str, outcome: dict[str, Any]) -> None:
            alert = shown.get(alert_id, {"id": alert_id})
            console.print(outcome_line(alert, outcome), highlight=False, soft_wrap=True)

        listener = AlertListener(server, site, api_key, on_alert, on_outcome)
        listener.start()
        if listener.missing:
            warn(f"{listener.missing}: replaying without alerts")
        rate = "max speed" if pace is None else f"{pace:g}x"
        say(f"replaying {count:,} events of {log.path} into {site!r} at {rate}{stop}")
        columns = (
            TextColumn("log {task.fields[clock]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err_console, transient=True) as bar:
            task = bar.add_task("replay", total=count, clock=log.clock(log.minutes[0]))

            def progress(sent: int, minute: float) -> None:
                bar.update(task, completed=sent, clock=log.clock(minute))

            try:
                summary: Summary = stream(
                    log, client, count=count, speed=pace, batch=batch, progress=progress
                )
            except ReplayError as err:
                listener.finish()
                fail(f"{err} (events sent before it stay; replaying again is safe)")
        if listener.missing is None and linger > 0:
            say(f"following alerts for {linger:g} s more (--linger)")
            time.sleep(linger)
        listener.finish()
    _print_summary(summary, listener)


def _print_summary(summary: Any, listener: Any) -> None:
    rate = summary.sent / summary.seconds if summary.seconds > 0 else float("inf")
    say(
        f"sent {summary.sent:,} events in {summary.batches:,} batches in {summary.seconds:.1f} s "
        f"({rate:,.0f} events/s)" + (f", {summary.retries} retries" if summary.retries else "")
    )
    rejected = sum(summary.rejected.values())
    say(f"accepted {summary.accepted:,}, duplicate {summary.duplicate:,}, rejected {rejected:,}")
    for kind, n in sorted(summary.rejected.items()):
        say(f"  rejected ({kind}): {n:,}")
        for rid, reason in summary.reasons[kind]:
            say(f"    {rid or '(no id)'}: {reason}")
    if listener.missing:
        say(f"alerts: none shown ({listener.missing})")
    else:
        say(f"alerts received: {listener.received:,}")

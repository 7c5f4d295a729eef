"""The first run, as a new user makes it: the ``synctwin`` command in a subprocess, from a
temporary working directory, with relative paths, ``~`` and names with spaces.

Every mistake is one ``error:`` line and exit code 2 before any work; nothing finished is
lost (an interrupted comparison resumes); a baseline that is not tuned for the user's own
site says so.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import CLI, run, wait_ready

from twin.scenario import load_scenario


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit code 2, no traceback, and exactly one line on stderr: ``error: ...``."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def my_site(cwd: Path, name: str = "my-site") -> Path:
    """A user's own site: a copy of ``default`` under another name (no tuned file for it)."""
    data = load_scenario("default").model_dump(mode="json") | {"name": name}
    path = cwd / "sites" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- mistakes


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["simulate", "--seed", "-5"], ["--seed"]),
        (["snapshot", "--seed", "-1"], ["--seed"]),
        (["compare", "--strategies", ","], ["give at least one strategy"]),
        (["compare", "--scenario", ",", "--seeds", "1"], ["give at least one scenario"]),
        (["compare", "--strategies", "static,static"], ["'static' is named twice"]),
        (["compare", "--scenario", "claims,claims"], ["'claims' is named twice"]),
        (["compare", "--strategies", "static", "--out", "a file"], ["a file: is a file"]),
        (["compare", "--out", "a file/sub", "--strategies", "static"], ["is a file"]),
        (["compare", "--overwrite", "--resume"], ["exclude each other"]),
        (["compare", "--resume", "--out", "nothing here"], ["no comparison to resume"]),
        (["simulate", "--out", "a file"], ["--out a file: is a file"]),
        (["simulate", "--log-events", "a file"], ["--log-events a file: is a file"]),
        (["simulate", "--days", "0"], ["--days"]),
        (["tune-baseline", "--out", "a dir"], ["a dir: is a directory"]),
        (["export", "no run", "--out", "b"], ["no run is not a training run"]),
        (["export", "a dir", "--out", "a file"], ["a file: is a file"]),
        (["train", "--out", "a file", "--timesteps", "10"], ["a file: is a file"]),
        (["calibrate", "events.csv", "--out", "a dir"], ["a dir: is a directory"]),
        (["experiment", "silo", "--out", "a file"], ["a file: is a file"]),
        (["demo", "--out", "a file"], ["a file: is a file"]),
        (["bench", "strategies", "--out", "a dir"], ["a dir: is a directory"]),
        (["serve", "--policy", "no bundle"], ["no bundle"]),
        (["simulate", "--bogus"], ["No such option", "--bogus"]),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(tmp_path: Path, args: list[str], expected) -> None:
    (tmp_path / "a file").write_text("not a folder\n")
    (tmp_path / "a dir").mkdir()
    (tmp_path / "events.csv").write_text("time,event\n")
    started = time.monotonic()
    assert_one_line_error(run(tmp_path, *args, ok=False), *expected)
    assert time.monotonic() - started < 60, "refused only after doing the work"
    assert (tmp_path / "a file").read_text() == "not a folder\n"


def test_error_text_is_printed_literally(tmp_path: Path) -> None:
    """Rich markup must not eat regexes or bracketed paths."""
    line = assert_one_line_error(run(tmp_path, "simulate", "-s", "[red]x.yaml", ok=False))
    assert "[red]x.yaml" in line
    bad = load_scenario("default").model_dump(mode="json") | {"name": "Bad Name"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = run(tmp_path, "simulate", "-s", "bad.yaml", ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "^[a-z0-9][a-z0-9_-]*$" in proc.stderr


# --------------------------------------------------------------------------- paths


def test_simulate_writes_to_relative_home_and_spaced_paths(tmp_path: Path) -> None:
    run(tmp_path, "simulate", "--out", "~/sim out", "--log-events", "event log")
    assert json.loads((tmp_path / "sim out" / "kpis.json").read_text())["items_completed"] > 0
    assert (tmp_path / "event log" / "events.csv").is_file()
    assert not (tmp_path / "~").exists()


def test_calibrate_and_its_threshold_from_relative_paths(tmp_path: Path) -> None:
    run(tmp_path, "simulate", "--days", "3", "--log-events", "floor log")
    run(
        tmp_path, "calibrate", "floor log/events.csv", "--roster", "floor log/roster.csv",
        "--out", "fitted/my site.yaml", "--report", "fitted/fit report.html",
    )  # fmt: skip
    fitted = load_scenario(tmp_path / "fitted" / "my site.yaml")
    assert fitted.sector_names == load_scenario("default").sector_names
    assert (tmp_path / "fitted" / "fit report.html").is_file()
    proc = run(tmp_path, "simulate", "-s", "~/fitted/my site.yaml", "--strategy", "static")
    assert "total_cost" in proc.stdout


# --------------------------------------------------------------------------- long comparisons


def _compare(cwd: Path, out: str, *extra: str, ok: bool = True):
    args = ["compare", "--strategies", "static,threshold", "--seeds", "3", "--workers", "1"]
    return run(cwd, *args, "--out", out, *extra, ok=ok)


def test_compare_refuses_to_overwrite_results_unless_asked(tmp_path: Path) -> None:
    _compare(tmp_path, "my cmp")
    summary = (tmp_path / "my cmp" / "summary.csv").read_bytes()
    (tmp_path / "my cmp" / "notes.txt").write_text("mine\n")
    assert_one_line_error(_compare(tmp_path, "my cmp", ok=False), "already holds a comparison")
    assert (tmp_path / "my cmp" / "summary.csv").read_bytes() == summary
    _compare(tmp_path, "my cmp", "--overwrite")
    assert (tmp_path / "my cmp" / "summary.csv").read_bytes() == summary
    assert (tmp_path / "my cmp" / "notes.txt").read_text() == "mine\n", "not ours to delete"


def _finished_runs(runs: Path) -> list[int]:
    """The run numbers in a comparison's finished parts (one Parquet file per batch)."""
    return [
        int(r)
        for part in sorted(runs.glob("part-*.parquet"))
        for r in pq.read_table(part, columns=["run"]).column("run").to_pylist()
    ]


def _ctrl_c_on() -> None:
    """In the child: SIGINT does what Ctrl-C does, even when this test runs in a
    background job of a non-interactive shell (which starts with SIGINT ignored, and a
    Python started with it ignored leaves it so)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_compare_keeps_finished_runs_and_resumes(tmp_path: Path) -> None:
    """Interrupt a comparison after its first run: what finished is kept, --resume ends it,
    and the summary is the one an uninterrupted comparison writes."""
    _compare(tmp_path, "whole")
    args = [CLI, "compare", "--strategies", "static,threshold,lookahead", "--seeds", "3"]
    args += ["--workers", "1", "--out", "cut short"]
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_on
    )
    runs = tmp_path / "cut short" / "runs"
    deadline = time.monotonic() + 300
    while not list(runs.glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    kept = _finished_runs(runs)
    assert 1 <= len(kept) < 9 and len(set(kept)) == len(kept)
    assert not (tmp_path / "cut short" / "summary.csv").exists()

    again = run(tmp_path, *args[1:], "--resume")
    assert "wrote" in again.stdout
    finished = _finished_runs(runs)
    assert sorted(finished) == list(range(9))  # every run once: the kept ones not again
    assert set(kept) <= set(finished)
    resumed = pd.read_csv(tmp_path / "cut short" / "summary.csv")
    whole = pd.read_csv(tmp_path / "whole" / "summary.csv")
    mine = resumed[resumed["strategy"].isin(["static", "threshold"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, whole)
    assert len(pd.read_parquet(tmp_path / "cut short" / "results.parquet")) == 9


# --------------------------------------------------------------------------- tuned baselines


def test_an_untuned_baseline_says_so_and_a_tuned_file_fixes_it(tmp_path: Path) -> None:
    my_site(tmp_path)
    proc = run(tmp_path, "compare", "-s", "sites/my-site.yaml", "--strategies",
               "static,threshold", "--seeds", "2", "--out", "untuned")  # fmt: skip
    assert "untuned default thresholds" in proc.stderr
    summary = pd.read_csv(tmp_path / "untuned" / "summary.csv", keep_default_na=False)
    assert set(summary.loc[summary.strategy == "threshold", "thresholds"]) == {"untuned"}
    assert set(summary.loc[summary.strategy == "static", "thresholds"]) == {""}
    assert "untuned defaults" in (tmp_path / "untuned" / "report.html").read_text()

    proc = run(tmp_path, "tune-baseline", "-s", "sites/my-site.yaml", "--seeds", "1",
               "--budget", "3", "--workers", "1", "--out", "tuned/my site.json")  # fmt: skip
    tuned = json.loads((tmp_path / "tuned" / "my site.json").read_text())
    assert tuned["scenario"] == "my-site"
    assert "threshold:" in proc.stdout

    strategies = "static,threshold:tuned/my site.json"
    proc = run(tmp_path, "compare", "-s", "sites/my-site.yaml", "--strategies", strategies,
               "--seeds", "2", "--out", "tuned cmp")  # fmt: skip
    assert "untuned" not in proc.stderr
    summary = pd.read_csv(tmp_path / "tuned cmp" / "summary.csv", keep_default_na=False)
    labels = summary.loc[summary.strategy == "threshold:tuned/my site.json", "thresholds"]
    assert set(labels) == {"tuned"}


def test_simulate_warns_about_untuned_thresholds(tmp_path: Path) -> None:
    my_site(tmp_path)
    proc = run(tmp_path, "simulate", "-s", "sites/my-site.yaml", "--strategy", "threshold")
    assert "untuned default thresholds" in proc.stderr
    proc = run(tmp_path, "simulate", "--strategy", "threshold")
    assert "untuned" not in proc.stderr


# --------------------------------------------------------------------------- the policy loop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serving(cwd: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``synctwin serve ARGS`` in ``cwd``, waited on ``/readyz``."""
    port = _free_port()
    proc = subprocess.Popen(
        [CLI, "serve", *args, "--port", str(port)],
        cwd=cwd,
        env={**os.environ, "HOME": str(cwd)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url)
    return proc, url


@pytest.mark.slow
def test_train_resume_export_compare_serve_reload_with_relative_paths(tmp_path: Path) -> None:
    """The README's policy loop with relative paths, ``~`` and spaces, from a working dir."""
    brief = ["--timesteps", "400", "--batch-size", "200", "--minibatch-size", "100"]
    brief += ["--checkpoint-every", "1", "--eval-every", "1000", "--eval-seeds", "1"]
    run(tmp_path, "train", "--out", "my run", *brief)
    run(tmp_path, "train", "--out", "~/my run", "--resume", *brief)
    manifest = json.loads((tmp_path / "my run" / "run.json").read_text())
    assert manifest["env_steps"] >= 800
    proc = run(tmp_path, "export", "my run", "--out", "my bundle")
    assert "synctwin serve --policy 'my bundle'" in proc.stdout
    assert (tmp_path / "my bundle" / "manifest.json").is_file()

    run(tmp_path, "compare", "--strategies", "static,policy:my bundle", "--seeds", "1",
        "--workers", "1", "--out", "with bundle")  # fmt: skip
    results = pd.read_parquet(tmp_path / "with bundle" / "results.parquet")
    assert set(results["strategy"]) == {"static", "policy:my bundle"}

    shutil.copytree(tmp_path / "my bundle", tmp_path / "bundle two")
    server, url = _serving(tmp_path, "--policy", "~/my bundle", "--admin-key", "admin")
    try:
        assert httpx.get(f"{url}/v1/policy").status_code == 200
        refused = httpx.post(f"{url}/v1/policy/reload", json={"path": "no such bundle"},
                             headers={"X-API-Key": "admin"})  # fmt: skip
        assert refused.status_code == 422
        answer = httpx.post(f"{url}/v1/policy/reload", json={"path": "bundle two"},
                            headers={"X-API-Key": "admin"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert Path(answer.json()["path"]) == (tmp_path / "bundle two").resolve()
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_demo_runs_end_to_end_and_its_next_steps_work_when_pasted(tmp_path: Path) -> None:
    """``synctwin demo`` (what ``make demo`` runs): baselines, brief RLlib training, export,
    comparison; then the commands it suggests, pasted as printed."""
    proc = run(tmp_path, "demo", "--seeds", "2", "--timesteps", "400", "--out", "demo out")
    out = tmp_path / "demo out"
    assert (out / "bundle" / "manifest.json").is_file()
    assert (out / "compare" / "report.html").is_file()
    summary = pd.read_csv(out / "compare" / "summary.csv")
    assert "policy:demo out/bundle" in set(summary["strategy"])
    for step in ("1. baselines", "2. train briefly", "3. export", "4. compare", "done"):
        assert step in proc.stdout
    steps = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in proc.stdout.splitlines()
        if line.startswith("  ") and ":" in line
    }
    report = shlex.split(steps["open the comparison report"])
    assert report[:3] == ["python3", "-m", "webbrowser"]
    assert report[3] == (out / "compare" / "report.html").resolve().as_uri()

    serve = shlex.split(steps["serve the bundle it made"])
    assert serve[1:] == ["serve", "--policy", "demo out/bundle"]
    server, url = _serving(tmp_path, *serve[2:])
    try:
        snapshot = shlex.split(steps["...and in another terminal"].split(">")[0])
        state = subprocess.run(snapshot, cwd=tmp_path, capture_output=True, check=True).stdout
        answer = httpx.post(f"{url}/v1/recommend", content=state,
                            headers={"content-type": "application/json"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["policy"]["name"] == "demo"
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert shlex.split(steps["plan in the dashboard"])[1:] == [
        "dashboard", "--policy", "demo out/bundle"
    ]  # fmt: skip

"""Training for real: Ray RLlib and SB3 on tiny budgets, through the CLI as users run it.

Every Ray run happens in a subprocess (the ``synctwin`` command or a small script), so
no Ray state leaks into other test modules. The cluster test starts its own Ray head on
127.0.0.1 with a dedicated temp dir and stops exactly the processes of that cluster
(see :func:`_stop_cluster`): a plain ``ray stop`` would kill every Ray process on the
machine, including other tests' runs.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from twin.features import FEATURE_NAMES
from twin.scenario import load_scenario
from twin.spaces import codecs

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLI = [str(BIN / "synctwin")]
SHIPPED = ROOT / "policies" / "default"

#: the smallest PPO that still does real work: 2 envs, 96-step batches, [32, 32] nets
TINY = [
    "--scenario", "default",
    "--timesteps", "96",
    "--batch-size", "96",
    "--minibatch-size", "48",
    "--epochs", "1",
    "--hidden", "32,32",
    "--envs-per-runner", "2",
    "--eval-every", "1",
    "--checkpoint-every", "1",
    "--eval-seeds", "1",
]  # fmt: skip


def synctwin(
    *args: str, ok: bool = True, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=(env or dict(os.environ)) | {"COLUMNS": "200"},
        cwd=ROOT,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def simulate_bundle(bundle: Path, seed: int = 7) -> float:
    from policies.runtime import BundlePolicy
    from twin.runner import simulate

    sc = load_scenario("default")
    return simulate(sc, BundlePolicy(bundle, sc), seed).kpis().total.total_cost


# --------------------------------------------------------------------------- rllib


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-iteration RLlib run (read-only: copy it to change it)."""
    run = tmp_path_factory.mktemp("train") / "run"
    synctwin("train", *TINY, "--timesteps", "192", "--out", str(run))
    return run


@pytest.mark.slow
def test_train_writes_an_exportable_run(tiny_run: Path, tmp_path: Path) -> None:
    from training.export import export_run

    manifest = json.loads((tiny_run / "run.json").read_text())
    assert manifest["backend"] == "rllib" and manifest["policy_mode"] == "per_sector"
    assert manifest["scenarios"] == ["default"] and manifest["finished"] is True
    assert manifest["iterations"] == 2 and manifest["env_steps"] >= 192
    assert set(manifest["versions"]) >= {"ray", "torch", "gymnasium", "mesa"}
    assert manifest["config"]["hidden"] == [32, 32]
    assert (tiny_run / "checkpoints" / "latest").read_text().strip() == "iter_000002"
    rows = metrics(tiny_run)
    assert [r["iteration"] for r in rows] == ["1", "2"]
    assert all(float(r["eval_cost"]) > 0 and float(r["threshold_cost"]) > 0 for r in rows)
    assert list((tiny_run / "tb").iterdir()), "TensorBoard event files"
    evaluation = json.loads((tiny_run / "evaluation.json").read_text())
    assert evaluation["seeds"] == manifest["eval_seeds"]

    bundle = tmp_path / "bundle"
    export_run(tiny_run, bundle, name="tiny", version="1")
    assert json.loads((bundle / "manifest.json").read_text())["evaluation"] == evaluation
    assert simulate_bundle(bundle) > 0


@pytest.mark.slow
def test_killed_trainer_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    """SIGTERM (what a preempted machine sends) mid-training, then --resume."""
    import psutil

    run = tmp_path / "run"
    trainer = subprocess.Popen(
        [*CLI, "train", *TINY, "--timesteps", "1000000", "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and trainer.poll() is None:
            if (run / "checkpoints" / "latest").is_file() and len(metrics(run)) >= 2:
                break
            time.sleep(0.5)
        assert trainer.poll() is None, "the trainer ended before it was killed"
        ray_procs = psutil.Process(trainer.pid).children(recursive=True)
        trainer.terminate()
        trainer.wait(timeout=60)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    _, left = psutil.wait_procs(ray_procs, timeout=30)
    for proc in left:  # the local Ray the trainer started must not outlive it
        proc.kill()
    assert not left, f"processes left behind: {[p.pid for p in left]}"

    before = json.loads((run / "run.json").read_text())
    assert before["finished"] is False
    done = len(metrics(run))
    checkpoint = (run / "checkpoints" / "latest").read_text().strip()
    proc = synctwin("train", "--resume", "--timesteps", "96", "--out", str(run))
    manifest = json.loads((run / "run.json").read_text())
    last = int(checkpoint.removeprefix("iter_"))
    assert manifest["finished"] is True and manifest["iterations"] == last + 1
    assert f"{last + 1} iterations" in proc.stdout
    assert manifest["sessions"][-1]["resumed_from"] == checkpoint
    assert manifest["config"]["hidden"] == [32, 32]  # the stored run's settings
    rows = metrics(run)
    assert len(rows) == done + 1 and rows[-1]["iteration"] == str(last + 1)
    assert int(rows[-1]["env_steps"]) > int(rows[-2]["env_steps"])
    assert (run / "checkpoints" / "latest").read_text().strip() == f"iter_{last + 1:06d}"


@pytest.mark.slow
def test_shared_policy_over_two_scenarios_trains_and_exports(tmp_path: Path) -> None:
    from training.export import export_run

    run = tmp_path / "shared"
    synctwin(
        "train", *TINY, "--scenario", "default,peak-surge", "--policy-mode", "shared",
        "--out", str(run),
    )  # fmt: skip
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["policy_mode"] == "shared"
    assert manifest["scenarios"] == ["default", "peak-surge"]
    bundle = tmp_path / "bundle"
    export_run(run, bundle, name="shared", version="1")
    assert sorted(p.name for p in bundle.glob("*.onnx")) == ["shared.onnx"]
    assert simulate_bundle(bundle) > 0


def test_training_env_draws_scenarios_and_seeds_and_adds_the_sector_id() -> None:
    from training.envs import TRAIN_SEED_BASE, TrainingEnv

    env = TrainingEnv({"scenarios": ["default", "peak-surge"], "shared": True})
    obs, _ = env.reset(seed=3)
    n = len(env.sectors)
    assert all(o.shape == (len(FEATURE_NAMES) + n,) for o in obs.values())
    for i, sector in enumerate(env.sectors):
        assert env.observation_spaces[sector].contains(obs[sector])
        assert obs[sector][len(FEATURE_NAMES) + i] == 1.0 and obs[sector][-n:].sum() == 1.0
    drawn = set()
    for _ in range(12):
        _, infos = env.reset()
        drawn.add(env._env.par_env.scenario.name)
        assert infos[env.sectors[0]]["twin_seed"] >= TRAIN_SEED_BASE
    assert drawn == {"default", "peak-surge"}
    again = TrainingEnv({"scenarios": ["default", "peak-surge"]})
    first = [again.reset(seed=5)[1]["receiving"]["twin_seed"], again.reset()[1]["receiving"]]
    second = [again.reset(seed=5)[1]["receiving"]["twin_seed"], again.reset()[1]["receiving"]]
    assert first == second, "the draws are seeded"


KILL_RUNNER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import ray
    from training.rllib import RLlibSettings, train_rllib

    state = {"pids": []}
    def on_start(algo):
        state["algo"] = algo

    def on_iteration(row):
        group = state["algo"].env_runner_group
        pids = group.foreach_env_runner(lambda er: os.getpid(), local_env_runner=False)
        state["pids"].append(pids)
        if row["iteration"] == 1:
            # kill the env runner's process; Ray brings the actor back (RLlib sets
            # max_restarts on env runners when restart_failed_env_runners=True)
            (actor,) = group._worker_manager.actors().values()
            ray.kill(actor, no_restart=False)
        state["restarts"] = group.num_remote_worker_restarts()

    settings = RLlibSettings(
        timesteps=288, num_env_runners=1, envs_per_runner=2, train_batch_size=96,
        minibatch_size=48, num_epochs=1, hidden=[32, 32], eval_every=100,
        checkpoint_every=100, eval_seeds=1,
    )
    manifest = train_rllib(settings, Path(sys.argv[1]), on_start=on_start,
                           on_iteration=on_iteration)
    print(json.dumps({"iterations": manifest["iterations"], "env_steps": manifest["env_steps"],
                      "pids": state["pids"], "restarts": state["restarts"]}))
    """
)


@pytest.mark.slow
def test_killed_env_runner_is_restarted_and_training_goes_on(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILL_RUNNER, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["env_steps"] >= 288, "training went on to its budget"
    assert out["restarts"] >= 1
    first, last = out["pids"][0], out["pids"][-1]
    assert len(last) == 1 and last != first, "a new env runner process samples"
    rows = metrics(tmp_path / "run")
    assert int(rows[-1]["env_runner_restarts"]) >= 1


# --------------------------------------------------------------------------- cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_pids(temp_dir: str) -> list[int]:
    """Processes of the cluster started with ``--temp-dir temp_dir``: the head's own
    processes carry their session dir (under that temp dir) on the command line, and the
    workers and agents they start (renamed ``ray::...``) are their descendants."""
    import psutil

    found: set[int] = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(temp_dir in part for part in p.info["cmdline"] or []):
                found.add(p.pid)
                found.update(c.pid for c in p.children(recursive=True))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    found.discard(os.getpid())
    return sorted(found)


def _stop_cluster(temp_dir: str) -> None:
    """Stop only this cluster's processes (by pid): SIGTERM, then SIGKILL after 15 s."""
    import psutil

    procs = []
    for pid in _cluster_pids(temp_dir):
        try:
            proc = psutil.Process(pid)
            proc.terminate()
            procs.append(proc)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=15)
    for proc in alive:
        proc.kill()
    psutil.wait_procs(alive, timeout=5)


#: the DAgger recipe in miniature: a lookahead teacher, one cloned episode, one DAgger
#: round of two, no PPO
DAGGER = [
    "--scenario", "claims",
    "--warm-start", "lookahead",
    "--warm-start-seeds", "1",
    "--warm-start-epochs", "3",
    "--dagger-rounds", "1",
    "--dagger-seeds", "2",
    "--timesteps", "0",
    "--hidden", "32,32",
    "--eval-seeds", "1",
]  # fmt: skip


@pytest.mark.slow
def test_train_on_a_ray_cluster(tmp_path: Path) -> None:
    # the DAgger recipe on one machine first (its own local Ray), for the comparison below
    synctwin("train", *DAGGER, "--out", str(tmp_path / "dagger-local"))
    port = _free_port()
    # a short temp dir: Ray's unix socket paths must stay under ~107 characters
    temp_dir = tempfile.mkdtemp(prefix="st-ray-")
    head = [
        str(BIN / "ray"), "start", "--head",
        "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--num-cpus", "2", "--disable-usage-stats", "--include-dashboard", "false",
        "--temp-dir", temp_dir,
    ]  # fmt: skip
    # token auth explicitly on for the head and the trainer (Ray 2.60 turns it on for a
    # new head when a token exists, while a connecting driver defaults to off)
    env = os.environ | {"RAY_AUTH_MODE": "token"}
    try:
        started = subprocess.run(head, capture_output=True, text=True, timeout=180, env=env)
        assert started.returncode == 0, started.stderr[-3000:]
        run = tmp_path / "run"
        proc = synctwin(
            "train", *TINY, "--timesteps", "192", "--num-env-runners", "1",
            "--address", f"127.0.0.1:{port}", "--out", str(run), env=env,
        )  # fmt: skip
        manifest = json.loads((run / "run.json").read_text())
        assert manifest["iterations"] == 2
        assert manifest["sessions"][0]["address"] == f"127.0.0.1:{port}"
        assert "2 iterations" in proc.stdout
        assert _cluster_pids(temp_dir), "the cluster is still up: the trainer only disconnected"
        # the same DAgger command with --address: every episode is a task on the cluster
        # (in the DAgger round, with the students sent along); the teacher's own course
        # gives the labels the machine alone gave, bit for bit (the students, and so the
        # courses they drive, differ between any two runs: RLlib's network initialisation
        # is not reproducible)
        synctwin(
            "train", *DAGGER, "--address", f"127.0.0.1:{port}",
            "--out", str(tmp_path / "dagger-cluster"), env=env,
        )  # fmt: skip
        local, cluster = (
            json.loads((tmp_path / d / "run.json").read_text())["warm_start"]["rounds"]
            for d in ("dagger-local", "dagger-cluster")
        )
        assert [r["labelled_on"] for r in local] == ["local", "local"]
        assert [r["labelled_on"] for r in cluster] == ["cluster", "cluster"]
        assert [r["episodes"] for r in cluster] == [1, 2]
        assert [r["labels"] for r in cluster] == [r["labels"] for r in local]
        assert cluster[0]["labels_digest"] == local[0]["labels_digest"]
        assert cluster[1]["mean_total_cost"] > 0  # the students were evaluated after the round
    finally:
        _stop_cluster(temp_dir)
        deadline = time.monotonic() + 20
        while _cluster_pids(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _cluster_pids(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


# --------------------------------------------------------------------------- sb3, sweep


@pytest.mark.slow
def test_sb3_backend_trains_and_exports(tmp_path: Path) -> None:
    from training.export import export_run

    run = tmp_path / "sb3run"
    proc = synctwin("train", "--backend", "sb3", "--timesteps", "64", "--hidden", "32,32",
                    "--out", str(run))  # fmt: skip
    assert "vs threshold" in proc.stdout
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["backend"] == "sb3" and manifest["policy_mode"] == "centralised"
    assert (run / "sb3" / "model.zip").is_file() and metrics(run)
    bundle = tmp_path / "bundle"
    export_run(run, bundle, name="sb3", version="1")
    assert simulate_bundle(bundle) > 0


@pytest.mark.slow
def test_sweep_runs_two_trials(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "base: {timesteps: 96, train_batch_size: 96, minibatch_size: 48, num_epochs: 1,\n"
        "       hidden: [32, 32], envs_per_runner: 2, eval_seeds: 1, eval_every: 1}\n"
        "grid: {lr: [0.0001, 0.0003]}\n"
        "max_concurrent: 2\n"
    )
    run = tmp_path / "sweep"
    synctwin("train", "--sweep", str(sweep), "--out", str(run))
    with (run / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(float(r["lr"]) for r in rows) == [0.0001, 0.0003]
    assert all(r["eval_cost"] and not r["error"] for r in rows)
    summary = json.loads((run / "sweep.json").read_text())
    best = run / "trials" / summary["best"]["trial"]
    assert (best / "run.json").is_file() and (best / "checkpoints" / "latest").is_file()


@pytest.mark.slow
def test_bench_train_writes_json(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    synctwin(
        "bench", "train", "--runners", "0", "--envs", "2", "--iterations", "1",
        "--batch-size", "96", "--run", str(tiny_run), "--out", str(out),
    )  # fmt: skip
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["num_env_runners"] == 0 and row["envs_per_runner"] == 2
    assert row["env_steps_per_s"] > 0 and row["seconds_per_iteration"] > 0
    assert set(result["time_to_beat_threshold"]) >= {"beat_threshold", "best_vs_threshold"}


# --------------------------------------------------------------------------- errors


def invoke(*args: str) -> tuple[int, str]:
    """The CLI in-process (errors come before Ray starts, so nothing to isolate)."""
    from typer.testing import CliRunner

    from experiments.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "nowhere"], "nowhere"),
        (["--backend", "jax"], "unknown backend"),
        (["--policy-mode", "tribal"], "policy mode"),
        (["--resume"], "no training run"),
        (["--address", "127.0.0.1:{port}"], "cannot reach a Ray cluster"),
        (["--sweep", "{missing}"], "does not exist"),
        (["--warm-start", "oracle"], "unknown strategy"),
        (["--reward", "profit"], "--reward 'profit': valid are cost, avoidable"),
        (["--backend", "sb3", "--reward", "avoidable"], "are rllib's"),
        (["--blind", "due_within_60,due_soon"], "--blind: unknown feature(s) 'due_soon'"),
        (["--backend", "sb3", "--blind", "due_within_60"], "are rllib's"),
        (["--mask-actions", "--policy-mode", "shared"], "--mask-actions needs --policy-mode"),
        (["--backend", "sb3", "--mask-actions"], "are rllib's"),
        (["--scenario", "default,claims"], "train them separately"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    args = [a.format(port=_free_port(), missing=tmp_path / "no.yaml") for a in args]
    code, output = invoke("train", *args, "--out", str(tmp_path / "run"))
    assert code == 2, output
    assert message in output
    assert "Traceback" not in output and len(output.strip().splitlines()) <= 2


def test_existing_run_dir_needs_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("taken")
    code, output = invoke("train", "--out", str(run))
    assert code == 2 and "--resume" in output
    (run / "run.json").write_text(json.dumps({"backend": "rllib", "config": {}}))
    code, output = invoke("train", "--resume", "--out", str(run))
    assert code == 2 and "no checkpoint" in output
    code, output = invoke("train", "--resume", "--backend", "sb3", "--out", str(run))
    assert code == 2 and "rllib run" in output


def test_help_does_not_import_ray() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from experiments.cli import app; "
        "r = CliRunner().invoke(app, ['train', '--help']); assert r.exit_code == 0, r.output; "
        "assert 'ray' not in sys.modules and 'torch' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=ROOT)


# --------------------------------------------------------------------------- shipped bundle


def test_shipped_bundle_matches_the_twin() -> None:
    from policies.bundle import read_manifest
    from policies.runtime import BundlePolicy

    manifest = read_manifest(SHIPPED)
    sc = load_scenario("default")
    assert manifest.scenario.name == "default"
    assert list(manifest.feature_names) == list(FEATURE_NAMES)
    schema = manifest.action_schema
    expected = codecs(sc, schema["max_lend"], schema["max_flex"])
    assert schema["sectors"] == {s: c.schema() for s, c in expected.items()}
    assert manifest.sectors == list(sc.sector_names)
    assert manifest.policy_mode == "per_sector"
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 1_000_000
    assert manifest.training["backend"] == "rllib"
    BundlePolicy(SHIPPED)  # checksums and compatibility
    assert simulate_bundle(SHIPPED) > 0

"""Imitation of a teacher, and DAgger: the teacher labels the states the student visits.

The labels are checked against the teacher itself at the same states (no stored
numbers), and the CLI run goes through Ray as users run it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents import make_controller
from training.warm_start import collect, merge
from twin.env_core import EnvCore
from twin.scenario import load_scenario

CLI = [str(Path(sys.executable).parent / "synctwin")]
SETTINGS = dict(team_weight=0.5, max_lend=5, max_flex=5, gamma=0.99, shared=False)


def _course(scenario_name: str, driver: str, seed: int) -> list:
    """The snapshots ``driver`` visits on ``seed`` (the envs' own core)."""
    sc = load_scenario(scenario_name)
    core = EnvCore(sc, max_lend=5, max_flex=5)
    core.reset(np.random.default_rng(seed))
    ctl = make_controller(driver, sc, seed)
    seen = []
    while not core.done:
        seen.append(core.live)
        decided = ctl.decide(core.live)
        core.step({s: core.decode(s, core.codecs[s].encode(a)) for s, a in decided.items()})
    return seen


def test_dagger_labels_the_states_the_actor_visits_with_the_teachers_actions() -> None:
    sc = load_scenario("peak-surge")
    seed = 7
    actor = make_controller("static", sc, seed)
    data = collect([sc], [seed], baseline="threshold", actors=[actor], **SETTINGS)
    states = _course("peak-surge", "static", seed)
    teacher = make_controller("threshold", sc, seed)
    core = EnvCore(sc, max_lend=5, max_flex=5)
    expected = {s: [] for s in sc.sector_names}
    for snap in states:
        decided = teacher.decide(snap)
        for s in sc.sector_names:
            if s in decided:
                expected[s].append(core.codecs[s].encode(decided[s]))
            else:
                state = next(st for st in snap.sectors if st.name == s)
                expected[s].append(core.codecs[s].encode(state.action))
    for s in sc.sector_names:
        assert len(data.actions[s]) == len(states)
        np.testing.assert_array_equal(data.actions[s], np.asarray(expected[s]))
    # the static plan and threshold differ somewhere, so the labels are not the course
    static = make_controller("static", sc, seed)
    driven = [core.codecs["picking"].encode(static.decide(x)["picking"]) for x in states]
    assert not np.array_equal(np.asarray(driven), data.actions["picking"])


def test_without_an_actor_the_teacher_drives_and_merge_keeps_every_label() -> None:
    sc = load_scenario("default")
    alone = collect([sc], [3], baseline="threshold", **SETTINGS)
    states = _course("default", "threshold", 3)
    assert len(alone.obs["picking"]) == len(states)
    both = merge(alone, collect([sc], [4], baseline="threshold", **SETTINGS))
    assert len(both.actions["picking"]) == len(alone.actions["picking"]) * 2
    np.testing.assert_array_equal(both.obs["packing"][: len(states)], alone.obs["packing"])


def test_hindsight_teaches_beside_the_training_twin() -> None:
    """The bound needs the twin itself: collect attaches it, and re-attaches it at every
    decision when the student drives (the bound's incumbent course is not followed)."""
    sc = load_scenario("claims")
    actor = make_controller("static", sc, 0)
    data = collect([sc], [1], baseline="hindsight", actors=[actor], **SETTINGS)
    assert len(data.actions[sc.sector_names[0]]) == len(_course("claims", "static", 1))


@pytest.mark.slow
def test_train_with_dagger_through_the_cli_and_export(tmp_path: Path) -> None:
    args = [
        "train", "--scenario", "default", "--out", "run",
        "--warm-start", "threshold", "--warm-start-seeds", "2", "--warm-start-epochs", "2",
        "--dagger-rounds", "1", "--dagger-seeds", "2", "--timesteps", "0",
        "--hidden", "32,32", "--eval-seeds", "1",
    ]  # fmt: skip
    done = subprocess.run([*CLI, *args], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "DAgger round 1" in done.stdout
    rounds = json.loads((tmp_path / "run" / "run.json").read_text())["warm_start"]["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[1]["labels"] > rounds[0]["labels"] > 0
    export = subprocess.run(
        [*CLI, "export", "run", "--out", "bundle"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert export.returncode == 0, export.stderr
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["evaluation"]["vs_threshold"] == rounds[-1]["vs_threshold"]
    assert [r["round"] for r in manifest["training"]["warm_start"]["rounds"]] == [0, 1]
    curves = subprocess.run(
        [*CLI, "experiment", "curves", "run", "--out", "curves.png"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert curves.returncode == 0, curves.stderr
    assert "run: 2 evaluations" in curves.stdout
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_curves_of_a_directory_that_is_no_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = subprocess.run(
        [*CLI, "experiment", "curves", "empty"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "no run.json" in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_dagger_needs_a_teacher(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "train", "--out", "run", "--dagger-rounds", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--warm-start" in done.stderr + done.stdout and "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["peak-surge", "lean-week"])
def test_shipped_suite_bundle_matches_the_twin_and_beats_threshold(name: str) -> None:
    """The bundles trained by DAgger from lookahead, then PPO (README: Results on the headroom
    suite)."""
    from policies.bundle import read_manifest
    from policies.runtime import BundlePolicy
    from twin.runner import simulate

    bundle = Path(__file__).resolve().parent.parent / "policies" / name
    manifest = read_manifest(bundle)
    sc = load_scenario(name)
    assert manifest.scenario.name == name
    assert manifest.scenario.digest == sc.digest  # retrain when the scenario changes
    teacher = manifest.training["warm_start"]
    assert teacher["baseline"] == "lookahead" and len(teacher["rounds"]) > 1
    assert manifest.training["timesteps"] > 0  # fine-tuned by PPO after the imitation
    assert manifest.evaluation["vs_threshold"] < 0  # on the run's own held-out seeds
    policy = BundlePolicy(bundle, sc)
    seeds = range(4)  # compare's held-out seeds: never trained on
    learned = [simulate(sc, policy, s).kpis().total.total_cost for s in seeds]
    rule = [
        simulate(sc, make_controller("threshold", sc, s), s).kpis().total.total_cost for s in seeds
    ]
    assert np.mean(learned) < np.mean(rule)


def test_shipped_suite_set_beats_threshold_on_every_suite_scenario() -> None:
    """``policies/suite``: one set of per-sector policies trained across the headroom suite
    (README: one set of policies for the whole suite) acts on each of its scenarios."""
    from policies.bundle import read_manifest
    from policies.runtime import BundlePolicy
    from twin.runner import simulate

    bundle = Path(__file__).resolve().parent.parent / "policies" / "suite"
    manifest = read_manifest(bundle)
    suite = ["peak-surge", "lean-week", "volatile-peak"]
    assert manifest.training["scenarios"] == suite
    assert manifest.training["warm_start"]["baseline"] == "lookahead"
    assert manifest.evaluation["scenarios"] == suite and manifest.evaluation["vs_threshold"] < 0
    seeds = range(4)  # compare's held-out seeds: never trained on
    for name in suite:
        sc = load_scenario(name)
        policy = BundlePolicy(bundle, sc)
        learned = [simulate(sc, policy, s).kpis().total.total_cost for s in seeds]
        rule = [
            simulate(sc, make_controller("threshold", sc, s), s).kpis().total.total_cost
            for s in seeds
        ]
        assert np.mean(learned) < np.mean(rule), name


def test_held_out_variants_load_and_fit_the_peak_surge_bundle() -> None:
    """``experiments/variants`` (README: variants never trained on) differ from the
    scenario the bundle trained on, yet its policies can act on them."""
    from policies.runtime import BundlePolicy
    from twin.runner import simulate

    root = Path(__file__).resolve().parent.parent
    base = load_scenario("peak-surge")
    files = sorted((root / "experiments" / "variants").glob("peak-surge-*.yaml"))
    assert len(files) == 4
    for f in files:
        sc = load_scenario(str(f))
        assert sc.digest != base.digest and sc.sector_names == base.sector_names
        policy = BundlePolicy(root / "policies" / "peak-surge", sc)
        assert simulate(sc, policy, 0).kpis().total.total_cost > 0

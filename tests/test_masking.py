"""Action masking (``train --mask-actions``): a sector's policy cannot propose a lend it
cannot make, in training, in the held-out evaluation and in the exported bundle.

The run is a real RLlib run through the ``synctwin`` command; the exported ONNX graph
is read with onnxruntime, and the bundle drives a day of the twin.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from test_training import TINY, simulate_bundle, synctwin

from training.masking import ILLEGAL_LOGIT, logit_mask
from twin.scenario import load_scenario
from twin.spaces import ActionCodec


def test_the_mask_covers_exactly_the_illegal_lend_targets() -> None:
    scenario = load_scenario("peak-surge")
    for sector in scenario.sector_names:
        codec = ActionCodec(scenario, sector)
        mask = np.array(logit_mask([scenario], sector, 5, 5))
        assert mask.shape == (codec.nvec.sum(),)
        lend_to = mask[: codec.nvec[0]]
        assert lend_to[0] == 0  # "lend nobody" stays possible
        assert [v == ILLEGAL_LOGIT for v in lend_to[1:]] == [not x for x in codec.legal_targets]
        assert not mask[codec.nvec[0] :].any()  # counts, overtime, priority: all legal
        assert not codec.legal_targets[codec.targets.index(sector)]  # never to itself


@pytest.mark.slow
def test_a_masked_run_trains_and_exports_masked_policies(tmp_path: Path) -> None:
    from training.export import export_run

    run = tmp_path / "masked"
    synctwin("train", *TINY, "--mask-actions", "--out", str(run))
    assert json.loads((run / "run.json").read_text())["config"]["mask_actions"] is True
    bundle = tmp_path / "bundle"
    export_run(run, bundle, name="masked", version="1")
    scenario = load_scenario("default")
    rng = np.random.default_rng(0)
    for sector in scenario.sector_names:
        codec = ActionCodec(scenario, sector)
        session = ort.InferenceSession(str(bundle / f"{sector}.onnx"))
        x = rng.random((4, session.get_inputs()[0].shape[1]), dtype=np.float32)
        logits = session.run(None, {session.get_inputs()[0].name: x})[0]
        targets = logits[:, 1 : codec.nvec[0]]
        illegal = ~np.array(codec.legal_targets)
        assert (targets[:, illegal] < ILLEGAL_LOGIT / 2).all()
        assert (targets[:, ~illegal] > ILLEGAL_LOGIT / 2).all()
    assert simulate_bundle(bundle) > 0

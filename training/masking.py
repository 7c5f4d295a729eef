"""Action masking (an ablation): a sector's policy never proposes a lend it cannot make.

Without it, a lend to the sector itself or to a sector its workers are not trained for
decodes to "lend nobody" (:class:`twin.spaces.ActionCodec`): the policy spends
probability on actions that mean something else than they say, and PPO must learn
that they are no-ops. The field's queueing benchmarks (QGym) found PPO competitive
only with a structured action space. Here the illegal ``lend_to`` values are fixed
per sector (they follow from the scenario's cross-training), so the mask is a fixed
vector added to the policy's logits, inside the module: training, imitation, the
held-out evaluation and the exported ONNX graph all act on the masked logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns

from twin.scenario import Scenario
from twin.spaces import ActionCodec

#: The logit of an illegal value: its probability is 0 to float precision, while
#: entropies and KL terms stay finite (``-inf`` would make them NaN).
ILLEGAL_LOGIT = -1e9


def logit_mask(
    scenarios: Sequence[Scenario], sector: str, max_lend: int, max_flex: int
) -> list[float]:
    """The mask added to ``sector``'s flattened logits: ``ILLEGAL_LOGIT`` at every
    ``lend_to`` value that is illegal in every one of ``scenarios``, 0 elsewhere."""
    codecs = [ActionCodec(sc, sector, max_lend, max_flex) for sc in scenarios]
    nvec = codecs[0].nvec
    mask = [0.0] * int(nvec.sum())
    for j in range(len(codecs[0].targets)):
        if not any(c.legal_targets[j] for c in codecs):
            mask[1 + j] = ILLEGAL_LOGIT  # value 0 of lend_to is "lend nobody": always legal
    return mask


class MaskedPPOTorchRLModule(DefaultPPOTorchRLModule):  # type: ignore[misc]
    """RLlib's default PPO module with ``model_config["logit_mask"]`` added to its logits."""

    def setup(self) -> None:
        super().setup()
        mask = torch.tensor(self.model_config["logit_mask"], dtype=torch.float32)
        self.register_buffer("logit_mask", mask, persistent=False)

    def _masked(self, out: dict[str, Any]) -> dict[str, Any]:
        out[Columns.ACTION_DIST_INPUTS] = out[Columns.ACTION_DIST_INPUTS] + self.logit_mask
        return out

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._masked(super()._forward(batch, **kwargs))

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._masked(super()._forward_train(batch, **kwargs))

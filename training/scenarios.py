"""Training scenarios and seed pools, without Ray (the SB3 backend and the CLI use them too).

Per-sector policies are shared across training scenarios only if every scenario has
the same sectors and the same action encoding; :func:`check_compatible` says which
scenario differs before any training starts. Seeds come from disjoint pools so that
what a run is evaluated on was never trained on: training draws twin seeds from
``TRAIN_SEED_BASE`` up, the held-out evaluation during training uses ``EVAL_SEED_BASE``
up, ``synctwin compare`` uses ``0..N-1`` and the threshold tuning ``10000`` up.
"""

from __future__ import annotations

from collections.abc import Sequence

from twin.scenario import Scenario, load_scenario
from twin.spaces import DEFAULT_MAX_FLEX, DEFAULT_MAX_LEND, codecs

#: twin seeds used for training by default; far from compare's 0..N-1 and evaluation's
TRAIN_SEED_BASE = 1_000_000
TRAIN_SEED_COUNT = 100_000
#: held-out seeds for evaluation during training
EVAL_SEED_BASE = 500_000


class IncompatibleScenarios(ValueError):
    """Training scenarios that one set of per-sector policies cannot share."""


def check_compatible(
    scenarios: Sequence[Scenario], max_lend: int, max_flex: int
) -> tuple[str, ...]:
    """The common sector names of ``scenarios``; raises if sectors or actions differ."""
    first = scenarios[0]
    ref = {s: c.schema() for s, c in codecs(first, max_lend, max_flex).items()}
    for sc in scenarios[1:]:
        if sc.sector_names != first.sector_names:
            raise IncompatibleScenarios(
                f"scenario {sc.name!r} has other sectors than {first.name!r}: train them separately"
            )
        if {s: c.schema() for s, c in codecs(sc, max_lend, max_flex).items()} != ref:
            raise IncompatibleScenarios(
                f"scenario {sc.name!r} has another action encoding than {first.name!r} "
                "(cross-training or flex pool differ): train them separately"
            )
    return first.sector_names


def load_training_scenarios(
    names: Sequence[str], max_lend: int = DEFAULT_MAX_LEND, max_flex: int = DEFAULT_MAX_FLEX
) -> list[Scenario]:
    """Load and check the training scenarios in the driver, before any Ray work starts."""
    scenarios = [load_scenario(n) for n in names]
    check_compatible(scenarios, max_lend, max_flex)
    return scenarios

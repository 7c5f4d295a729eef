"""Which features drove a decision: occlusion attribution on the ONNX policy.

For a sector whose policy chose the action vector ``a`` from features ``x``, the
contribution of feature ``j`` is

    ``log p(a | x) - log p(a | x with x_j replaced by its reference value)``

where ``log p(a | x)`` is the sum over the action's fields of the log-softmax of
the field's logits (the policy's own action distribution). A positive contribution
means the feature's current value made the chosen action more likely than a typical
value would have; the largest ones are "the features that drove the decision".

The reference value of each feature is its mean, per sector, over one simulated
day of the bundle's scenario under its static plan (seed 0, a snapshot every 30
minutes): "what a typical moment looks like". All occlusions of a sector go to
onnxruntime as one batch (1 + 37 rows), so explaining a decision costs one
inference call per sector.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from policies.runtime import BundlePolicy
from twin.actions import SectorAction
from twin.features import FEATURES, featurizer
from twin.model import OperationModel
from twin.rollout import close
from twin.scenario import Scenario
from twin.snapshot import OperationSnapshot

#: Minutes between the reference day's snapshots, and the minute of the example snapshot.
REFERENCE_EVERY_MINUTES = 30
EXAMPLE_MINUTE = 600


@dataclass(frozen=True)
class Driver:
    """One feature's part in a decision."""

    name: str
    meaning: str
    unit: str
    value: float
    reference: float
    contribution: float  # drop of the chosen action's log-probability when occluded


@dataclass(frozen=True)
class ReferenceDay:
    """A simulated day of a scenario under its static plan: reference features and examples."""

    features: np.ndarray  # (n_sectors, n_features): per-sector mean
    examples: dict[int, OperationSnapshot]  # minute -> snapshot


def reference_day(scenario: Scenario) -> ReferenceDay:
    """One day (at most the horizon) of ``scenario``'s static plan from seed 0.

    Cached per scenario content: reloading a bundle of the same scenario costs nothing.
    """
    key = (scenario.name, scenario.digest)
    day = _REFERENCE_DAYS.get(key)
    if day is None:
        day = _REFERENCE_DAYS[key] = _simulate_reference_day(scenario)
    return day


_REFERENCE_DAYS: dict[tuple[str, str], ReferenceDay] = {}


def _simulate_reference_day(scenario: Scenario) -> ReferenceDay:
    model = OperationModel(scenario, rng=np.random.default_rng(0), record_every_minutes=None)
    fz = featurizer(scenario)
    stop = min(scenario.horizon_minutes, 1440)
    rows, examples = [], {}
    while model.minute < stop - 1e-9:
        model.run_minutes(REFERENCE_EVERY_MINUTES)
        snap = model.snapshot()
        rows.append(fz.matrix(snap))
        if int(model.minute) in (EXAMPLE_MINUTE, EXAMPLE_MINUTE + 180, 180):
            examples[int(model.minute)] = snap
    if not examples:  # a horizon shorter than the example minutes
        examples[int(model.minute)] = snap
    close(model)
    return ReferenceDay(features=np.mean(rows, axis=0).astype(np.float32), examples=examples)


def batch_logits(
    policy: BundlePolicy, feats: np.ndarray, sector: int, rows: np.ndarray
) -> np.ndarray:
    """Logits of ``sector`` for a batch of its feature vectors ``rows`` (B, n_features).

    ``feats`` is the full (n_sectors, n_features) matrix: a centralised policy sees
    every sector, with ``rows`` in place of ``sector``'s features.
    """
    m = policy.manifest
    sessions = policy._sessions  # one batched call; BundlePolicy only runs single states
    name = m.sectors[sector]
    if m.policy_mode == "per_sector":
        return sessions[m.policy_files[name]].run(None, {"obs": rows})[0]
    (session,) = sessions.values()
    n = len(m.sectors)
    if m.policy_mode == "shared":
        onehot = np.zeros((len(rows), n), dtype=np.float32)
        onehot[:, sector] = 1.0
        return session.run(None, {"obs": np.concatenate([rows, onehot], axis=1)})[0]
    full = np.repeat(feats[None, :, :], len(rows), axis=0)
    full[:, sector, :] = rows
    out = session.run(None, {"obs": full.reshape(len(rows), -1)})[0]
    sizes = [int(policy.codecs[s].nvec.sum()) for s in m.sectors]
    start = int(sum(sizes[:sector]))
    return out[:, start : start + sizes[sector]]


@lru_cache(maxsize=32)
def _layout(nvec: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Gather indices (n_fields, widest) into concatenated field logits, and the padding."""
    width = max(nvec)
    gather = np.zeros((len(nvec), width), dtype=np.int64)
    pad = np.ones((len(nvec), width), dtype=bool)
    start = 0
    for f, n in enumerate(nvec):
        gather[f, :n] = np.arange(start, start + n)
        pad[f, :n] = False
        start += n
    return gather, pad


def log_softmax_fields(logits: np.ndarray, nvec: tuple[int, ...]) -> np.ndarray:
    """Per-field log-softmax of a batch of concatenated field logits.

    Returns:
        ``(batch, n_fields, widest field)``, float64, ``-inf`` past each field's size.
    """
    gather, pad = _layout(nvec)
    x = logits[:, gather].astype(np.float64)
    x[:, pad] = -np.inf
    x -= x.max(axis=2, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=2, keepdims=True))
    return x


@dataclass(frozen=True)
class Explained:
    """A sector's greedy decision (as :meth:`BundlePolicy.decisions`) and its drivers."""

    action: SectorAction
    vector: np.ndarray
    probabilities: list[np.ndarray]  # per action field
    confidence: float  # probability of the chosen action (product over fields)
    drivers: list[Driver]


def decide_and_explain(
    policy: BundlePolicy,
    feats: np.ndarray,
    reference: np.ndarray | None,
    top: int = 3,
) -> dict[str, Explained]:
    """Every sector's greedy decision and, given ``reference``, its ``top`` drivers.

    One onnxruntime call per sector answers both: row 0 of the batch is the state as
    is (the decision, identical to :meth:`BundlePolicy.decisions`), rows ``1 + j`` have
    feature ``j`` set to its reference value (the occlusions). The arithmetic after
    inference runs once for all sectors that share an action encoding.

    Args:
        policy: the loaded bundle.
        feats: the (n_sectors, n_features) feature matrix of the state.
        reference: the (n_sectors, n_features) reference values; ``None``: no drivers.
        top: how many drivers per sector.
    """
    sectors = list(policy.manifest.sectors)
    n_features = feats.shape[1]
    if reference is None:
        batches = [feats[i : i + 1] for i in range(len(sectors))]
    else:
        idx = np.arange(n_features)
        stacked = np.repeat(feats[:, None, :], n_features + 1, axis=1)  # (S, 1 + F, F)
        stacked[:, idx + 1, idx] = reference
        batches = list(stacked)
    logits = [batch_logits(policy, feats, i, rows) for i, rows in enumerate(batches)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, sector in enumerate(sectors):
        groups.setdefault(tuple(int(n) for n in policy.codecs[sector].nvec), []).append(i)
    out: dict[str, Explained] = {}
    for nvec, members in groups.items():
        block = np.stack([logits[i] for i in members])  # (S, B, L)
        n_sec, batch, width = block.shape
        lp = log_softmax_fields(block.reshape(n_sec * batch, width), nvec)
        lp = lp.reshape(n_sec, batch, *lp.shape[1:])  # (S, B, fields, widest)
        vectors = lp[:, 0].argmax(axis=2)  # (S, fields)
        chosen = np.take_along_axis(lp, vectors[:, None, :, None], axis=3)[..., 0].sum(axis=2)
        probs = np.exp(lp[:, 0])
        for k, i in enumerate(members):
            found: list[Driver] = []
            if reference is not None:
                contribution = chosen[k, 0] - chosen[k, 1:]
                for j in np.argsort(-contribution, kind="stable")[:top]:
                    feature = FEATURES[j]
                    found.append(
                        Driver(
                            name=feature.name,
                            meaning=feature.meaning,
                            unit=feature.unit,
                            value=float(feats[i, j]),
                            reference=float(reference[i, j]),
                            contribution=float(contribution[j]),
                        )
                    )
            out[sectors[i]] = Explained(
                action=_decode(policy, sectors[i], tuple(vectors[k].tolist())),
                vector=vectors[k],
                probabilities=[probs[k, f, :n] for f, n in enumerate(nvec)],
                confidence=float(np.exp(chosen[k, 0])),
                drivers=found,
            )
    return {s: out[s] for s in sectors}


_DECODED: weakref.WeakKeyDictionary[
    BundlePolicy, dict[tuple[str, tuple[int, ...]], SectorAction]
] = weakref.WeakKeyDictionary()


def _decode(policy: BundlePolicy, sector: str, vector: tuple[int, ...]) -> SectorAction:
    """``codec.decode``, remembered per policy (a policy has few distinct actions)."""
    cache = _DECODED.get(policy)
    if cache is None:
        cache = _DECODED[policy] = {}
    key = (sector, vector)
    action = cache.get(key)
    if action is None:
        action = cache[key] = policy.codecs[sector].decode(np.array(vector, dtype=np.int64))
    return action

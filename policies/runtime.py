"""Run an exported policy bundle with onnxruntime: a :class:`~twin.actions.Controller`.

This is what the server, ``synctwin simulate --strategy policy:DIR`` and
comparisons use. It imports neither torch nor ray: features come from
:mod:`twin.features` (the same function the training env used, so there is no
train/serve skew) and actions are decoded by :mod:`twin.spaces`.

Policy modes (``manifest.policy_mode``):

``per_sector``
    one ONNX file per sector; input: that sector's features.
``shared``
    one ONNX file for every sector; input: the sector's features followed by a
    one-hot of the sector's index in scenario order.
``centralised``
    one ONNX file for the whole operation; input: every sector's features
    concatenated in scenario order; output: every sector's logits concatenated.

Each ONNX file maps ``obs`` (float32, batch first) to ``logits``: for every sector,
the concatenated logits of the MultiDiscrete action fields. The greedy action is
the argmax of each field's logits.

Loading checks every ONNX file against the manifest before it is used: one float32
input ``obs`` of ``(batch, n)`` and a first output ``logits`` of ``(batch, k)``,
where ``n`` is the number of features (plus the sectors' one-hot in ``shared``
mode, times the sectors in ``centralised`` mode) and ``k`` the sum of the sector's
action ``nvec`` (of every sector in ``centralised`` mode). An exporter that wrote
the file's sectors into its ONNX metadata (``synctwin.sectors``, a JSON list) is
held to them too, so two sectors' files swapped with their checksums are refused;
files without that metadata (older bundles) are checked by shape alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from policies.bundle import (
    MODE_METADATA,
    SECTORS_METADATA,
    BundleError,
    Manifest,
    read_manifest,
)
from twin.actions import SectorAction
from twin.features import FEATURE_NAMES, featurizer
from twin.scenario import Scenario, ScenarioError, load_scenario
from twin.snapshot import OperationSnapshot
from twin.spaces import ActionCodec, codecs


@dataclass(frozen=True)
class SectorDecision:
    """What a policy decided for one sector, and how sure it was."""

    action: SectorAction
    vector: np.ndarray  # the MultiDiscrete action
    probabilities: list[np.ndarray]  # per action field, softmax of its logits
    features: np.ndarray  # the observation the policy saw (this sector's features)

    @property
    def confidence(self) -> float:
        """Probability of the chosen action under the policy (product over fields)."""
        return float(np.prod([p[i] for p, i in zip(self.probabilities, self.vector, strict=True)]))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


class BundlePolicy:
    """A loaded, verified policy bundle.

    Args:
        bundle_dir: the bundle directory.
        scenario: the scenario the policy acts on; default the bundle's own built-in
            scenario. Another scenario works if it has the same sectors and action
            encoding (held-out evaluation); otherwise :class:`BundleError`.

    Raises:
        BundleError: missing or corrupt files, a wrong schema version, or a feature
            list or action encoding that differs from this version of the twin.
    """

    name = "policy"

    def __init__(self, bundle_dir: str | Path, scenario: Scenario | None = None) -> None:
        self.path = Path(bundle_dir).expanduser()
        self.manifest: Manifest = read_manifest(self.path)
        m = self.manifest
        if scenario is None:
            try:
                scenario = load_scenario(m.scenario.name)
            except ScenarioError:
                raise BundleError(
                    f"policy bundle {self.path}: trained on scenario {m.scenario.name!r}, "
                    "which is not built in; pass the scenario file"
                ) from None
        self.scenario = scenario
        self._check_compatible()
        self.codecs: dict[str, ActionCodec] = codecs(
            scenario, m.action_schema["max_lend"], m.action_schema["max_flex"]
        )
        self._featurizer = featurizer(scenario)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._sessions: dict[str, ort.InferenceSession] = {}
        files = sorted(set(m.policy_files.values()))
        if m.policy_mode != "per_sector" and len(files) != 1:
            raise BundleError(
                f"policy bundle {self.path}: policy mode {m.policy_mode!r} needs one policy "
                f"file for every sector, the manifest names {len(files)}: {files}"
            )
        for file in files:
            # the bytes verified here are the bytes run: the digest describes what is served
            try:
                data = (self.path / file).read_bytes()
            except OSError as err:
                raise BundleError(
                    f"policy bundle {self.path}: cannot read {file}: {err.strerror or err}"
                ) from None
            if hashlib.sha256(data).hexdigest() != m.files[file].sha256:
                raise BundleError(
                    f"policy bundle {self.path}: checksum mismatch for {file} "
                    "(the file changed while the bundle was loading)"
                )
            try:
                session = ort.InferenceSession(
                    data, sess_options=opts, providers=["CPUExecutionProvider"]
                )
            except Exception as err:  # onnxruntime raises its own exception types
                raise BundleError(f"policy bundle {self.path}: cannot load {file}: {err}") from None
            self._check_model(file, session)
            self._sessions[file] = session
        self._splits = {
            s: np.cumsum(c.nvec)[:-1] for s, c in self.codecs.items()
        }  # where each field's logits end

    @property
    def digest(self) -> str:
        """The bundle's content digest (see :attr:`Manifest.content_digest`)."""
        return self.manifest.content_digest

    @property
    def version(self) -> str:
        """The served version: the manifest's version and 12 hex of the content digest."""
        return self.manifest.served_version

    def _check_model(self, file: str, session: ort.InferenceSession) -> None:
        """``file``'s inputs, outputs and metadata against the manifest's sectors."""
        m = self.manifest
        sectors = [s for s in m.sectors if m.policy_files[s] == file]
        named = f"sector {sectors[0]!r}" if len(sectors) == 1 else f"sectors {sectors}"
        where = f"policy bundle {self.path}: {file} ({named})"
        n_feat = len(m.feature_names)
        width = {s: int(self.codecs[s].nvec.sum()) for s in m.sectors}
        if m.policy_mode == "centralised":
            n_in, n_out = n_feat * len(m.sectors), sum(width.values())
            n_in_means = f"{len(m.sectors)} sectors' {n_feat} features"
        else:
            n_in = n_feat + (len(m.sectors) if m.policy_mode == "shared" else 0)
            n_in_means = f"{n_feat} features" + (
                f" and a one-hot of {len(m.sectors)} sectors" if m.policy_mode == "shared" else ""
            )
            outs = {width[s] for s in sectors}
            if len(outs) != 1:
                raise BundleError(f"{where}: its sectors' action encodings differ in size")
            (n_out,) = outs
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or inputs[0].name != "obs" or inputs[0].type != "tensor(float)":
            got = [(i.name, i.type) for i in inputs]
            raise BundleError(f"{where}: needs one float32 input 'obs', the model has {got}")
        if not outputs or outputs[0].name != "logits":
            got = [o.name for o in outputs]
            raise BundleError(f"{where}: needs the output 'logits' first, the model has {got}")
        expected = (
            ("input", inputs[0], n_in, n_in_means),
            ("output", outputs[0], n_out, "the action schema's nvec summed"),
        )
        for kind, arg, size, means in expected:
            shape = list(arg.shape)
            if len(shape) != 2 or shape[1] != size:
                raise BundleError(
                    f"{where}: {kind} {arg.name!r} has shape {shape}, the manifest needs "
                    f"[batch, {size}] ({means}): is it another sector's or bundle's file?"
                )
        meta = session.get_modelmeta().custom_metadata_map
        if SECTORS_METADATA in meta:
            try:
                exported_for = json.loads(meta[SECTORS_METADATA])
            except json.JSONDecodeError:
                exported_for = meta[SECTORS_METADATA]
            if exported_for != sectors:
                raise BundleError(
                    f"{where}: the file was exported for sectors {exported_for}, the manifest "
                    f"maps it to {sectors}"
                )
        if MODE_METADATA in meta and meta[MODE_METADATA] != m.policy_mode:
            raise BundleError(
                f"{where}: the file was exported for policy mode {meta[MODE_METADATA]!r}, "
                f"the manifest says {m.policy_mode!r}"
            )

    def _check_compatible(self) -> None:
        m, sc = self.manifest, self.scenario
        where = f"policy bundle {self.path}"
        if list(m.feature_names) != list(FEATURE_NAMES):
            missing = sorted(set(FEATURE_NAMES) - set(m.feature_names))
            extra = sorted(set(m.feature_names) - set(FEATURE_NAMES))
            raise BundleError(
                f"{where}: its feature list differs from this twin's "
                f"(missing {missing or 'none'}, unknown {extra or 'none'}); re-export it"
            )
        if list(m.sectors) != list(sc.sector_names):
            raise BundleError(
                f"{where}: trained for sectors {m.sectors}, scenario {sc.name!r} has "
                f"{list(sc.sector_names)}"
            )
        schema = m.action_schema
        expected = codecs(sc, schema.get("max_lend", -1), schema.get("max_flex", -1))
        for sector, codec in expected.items():
            if schema.get("sectors", {}).get(sector) != codec.schema():
                raise BundleError(
                    f"{where}: action encoding of {sector!r} differs from this twin's "
                    f"for scenario {sc.name!r}"
                )

    # ------------------------------------------------------------------ inference

    def logits(self, snapshot: OperationSnapshot) -> dict[str, np.ndarray]:
        """Each sector's concatenated field logits for the state ``snapshot``."""
        feats = self._featurizer.matrix(snapshot).astype(np.float32)
        return self.logits_from_features(feats)

    def logits_from_features(self, feats: np.ndarray) -> dict[str, np.ndarray]:
        """As :meth:`logits`, from the (n_sectors, n_features) feature matrix."""
        m = self.manifest
        sectors = list(m.sectors)
        if m.policy_mode == "centralised":
            (session,) = self._sessions.values()
            out = session.run(None, {"obs": feats.reshape(1, -1)})[0][0]
            sizes = [int(self.codecs[s].nvec.sum()) for s in sectors]
            parts = np.split(out, np.cumsum(sizes)[:-1])
            return dict(zip(sectors, parts, strict=True))
        if m.policy_mode == "shared":
            obs = np.concatenate([feats, np.eye(len(sectors), dtype=np.float32)], axis=1)
            (session,) = self._sessions.values()
            out = session.run(None, {"obs": obs})[0]
            return {s: out[i] for i, s in enumerate(sectors)}
        result = {}
        for i, s in enumerate(sectors):
            session = self._sessions[m.policy_files[s]]
            result[s] = session.run(None, {"obs": feats[i : i + 1]})[0][0]
        return result

    def decisions(self, snapshot: OperationSnapshot) -> dict[str, SectorDecision]:
        """Greedy action, its probabilities and the features seen, per sector."""
        feats = self._featurizer.matrix(snapshot).astype(np.float32)
        out = {}
        for i, (sector, logits) in enumerate(self.logits_from_features(feats).items()):
            fields = np.split(logits, self._splits[sector])
            vector = np.array([int(np.argmax(f)) for f in fields], dtype=np.int64)
            out[sector] = SectorDecision(
                action=self.codecs[sector].decode(vector),
                vector=vector,
                probabilities=[_softmax(f) for f in fields],
                features=feats[i],
            )
        return out

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        """The Controller protocol: the greedy action of every sector."""
        return {s: d.action for s, d in self.decisions(snapshot).items()}

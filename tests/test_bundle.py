"""Reading a policy bundle: file-system failures are :class:`BundleError` naming the path.

A server reloading a bundle, or ``synctwin serve --policy DIR``, must answer with a
message that says which bundle and which file is unusable, never with a raw
``OSError`` traceback. The bundles here are stand-ins: ``read_manifest`` checks the
manifest and checksums, not the ONNX inside, so any bytes will do.

What a bundle is: its served version carries a digest of its contents, and loading
refuses ONNX files whose inputs, outputs or metadata do not fit their sectors. These
tests work on copies of the shipped bundle and, for the server, a real ``synctwin serve``.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from conftest import SHIPPED_BUNDLE

from policies.bundle import (
    DIGEST_CHARS,
    MANIFEST,
    MODE_METADATA,
    SECTORS_METADATA,
    BundleError,
    Manifest,
    ScenarioRef,
    file_entries,
    read_manifest,
    write_manifest,
)
from policies.runtime import BundlePolicy
from twin.features import FEATURE_NAMES
from twin.model import OperationModel
from twin.scenario import load_scenario


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A minimal well-formed bundle: one sector, one (fake) policy file, its checksum."""
    directory = tmp_path / "bundle"
    directory.mkdir()
    (directory / "packing.onnx").write_bytes(b"not really onnx")
    write_manifest(
        directory,
        Manifest(
            name="stand-in",
            version="1",
            scenario=ScenarioRef(name="default", digest="0" * 16),
            sectors=["packing"],
            policy_files={"packing": "packing.onnx"},
            feature_names=["queue"],
            action_schema={},
            files=file_entries(directory, ["packing.onnx"]),
        ),
    )
    return directory


def test_a_well_formed_bundle_reads(bundle: Path) -> None:
    assert read_manifest(bundle).policy_files == {"packing": "packing.onnx"}


def test_unreadable_manifest_names_the_file(bundle: Path, monkeypatch) -> None:
    # tests may run as root, for whom file modes do not stop reading: fail the read itself
    manifest = bundle / MANIFEST
    original = Path.read_text

    def read_text(self: Path, *args, **kwargs) -> str:
        if self == manifest:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(BundleError, match="Permission denied") as err:
        read_manifest(bundle)
    assert str(manifest) in str(err.value)


def test_unreadable_policy_file_names_the_file(bundle: Path, monkeypatch) -> None:
    policy = bundle / "packing.onnx"
    original = Path.open

    def open_(self: Path, *args, **kwargs):
        if self == policy:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    with pytest.raises(BundleError, match="Permission denied") as err:
        read_manifest(bundle)
    assert str(policy) in str(err.value)


def test_manifest_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).mkdir()
    with pytest.raises(BundleError, match=f"{MANIFEST} is a directory") as err:
        read_manifest(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_policy_file_that_is_a_directory(bundle: Path) -> None:
    policy = bundle / "packing.onnx"
    policy.unlink()
    policy.mkdir()
    with pytest.raises(BundleError, match=r"packing\.onnx is a directory"):
        read_manifest(bundle)


def test_a_path_the_file_system_refuses(tmp_path: Path) -> None:
    too_long = tmp_path / ("b" * 300)  # longer than any file-name limit: ENAMETOOLONG
    with pytest.raises(BundleError, match="policy bundle") as err:
        read_manifest(too_long)
    assert "b" * 300 in str(err.value)


def test_a_file_where_the_bundle_directory_should_be(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "bundle.zip"
    not_a_directory.write_bytes(b"PK")
    with pytest.raises(BundleError, match="not a directory"):
        read_manifest(not_a_directory)


# --------------------------------------------------------------------------- contents


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _rewrite_checksums(directory: Path) -> None:
    """Record the files' current checksums in the manifest (what a careful tamperer does)."""
    manifest = _manifest_of(directory)
    write_manifest(
        directory,
        manifest.model_copy(update={"files": file_entries(directory, sorted(manifest.files))}),
    )


def _manifest_of(directory: Path) -> Manifest:
    return Manifest.model_validate_json((directory / MANIFEST).read_text())


def _swap(directory: Path, a: str, b: str) -> None:
    """Swap two files' bytes and their checksums in the manifest."""
    bytes_a, bytes_b = (directory / a).read_bytes(), (directory / b).read_bytes()
    (directory / a).write_bytes(bytes_b)
    (directory / b).write_bytes(bytes_a)
    _rewrite_checksums(directory)


def _tag(directory: Path) -> None:
    """Write into each ONNX file the metadata the exporter writes: its sector and mode."""
    manifest = _manifest_of(directory)
    for sector, file in manifest.policy_files.items():
        model = onnx.load(str(directory / file))
        onnx.helper.set_model_props(
            model, {SECTORS_METADATA: json.dumps([sector]), MODE_METADATA: manifest.policy_mode}
        )
        onnx.save(model, str(directory / file))
    _rewrite_checksums(directory)


def _linear_model(n_in: int, n_out: int) -> onnx.ModelProto:
    """obs (batch, n_in) -> logits (batch, n_out): a zero linear map, valid ONNX."""
    weights = onnx.numpy_helper.from_array(np.zeros((n_in, n_out), np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["obs", "w"], ["logits"])],
        "stand-in",
        [onnx.helper.make_tensor_value_info("obs", onnx.TensorProto.FLOAT, ["batch", n_in])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", n_out])],
        initializer=[weights],
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


@pytest.fixture
def shipped(policy_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the shipped bundle (its ONNX files carry no metadata)."""
    return _copy(policy_bundle, tmp_path / "shipped")


def test_served_version_is_the_manifest_version_and_the_content_digest(shipped: Path) -> None:
    policy = BundlePolicy(shipped)
    manifest = read_manifest(shipped)
    assert len(policy.digest) == 64 and policy.digest == manifest.content_digest
    assert policy.version == f"{manifest.version}+{policy.digest[:DIGEST_CHARS]}"


def test_digest_ignores_what_does_not_change_the_policies(shipped: Path) -> None:
    before = read_manifest(shipped)
    write_manifest(
        shipped,
        before.model_copy(
            update={"name": "renamed", "version": "2", "created": "2000-01-01T00:00:00+00:00"}
        ),
    )
    after = read_manifest(shipped)
    assert after.content_digest == before.content_digest
    assert after.served_version != before.served_version  # the version part still changed


@pytest.mark.parametrize(
    "file", ["receiving.onnx", "putaway.onnx", "picking.onnx", "packing.onnx", "shipping.onnx"]
)
def test_digest_changes_when_any_file_changes(shipped: Path, file: str) -> None:
    before = read_manifest(shipped)
    model = onnx.load(str(shipped / file))
    onnx.helper.set_model_props(model, {"note": "retouched"})  # same policy, other bytes
    onnx.save(model, str(shipped / file))
    with pytest.raises(BundleError, match="checksum mismatch"):
        read_manifest(shipped)
    _rewrite_checksums(shipped)
    after = BundlePolicy(shipped)
    assert after.manifest.version == before.version
    assert after.digest != before.content_digest
    assert after.version != before.served_version


def test_digest_changes_when_the_action_schema_changes(shipped: Path) -> None:
    before = read_manifest(shipped)
    schema = dict(before.action_schema) | {"max_lend": before.action_schema["max_lend"] + 1}
    changed = before.model_copy(update={"action_schema": schema})
    assert changed.content_digest != before.content_digest


def test_swapped_files_without_metadata_load_under_another_version(shipped: Path) -> None:
    """Sectors of one scenario share an action shape: without metadata a swap is not
    detectable at load, but the served version says the bundle is not the same one."""
    before = BundlePolicy(shipped).version
    _swap(shipped, "receiving.onnx", "putaway.onnx")
    after = BundlePolicy(shipped)
    assert after.manifest.version == "1"
    assert after.version != before and after.version.startswith("1+")


def test_swapped_files_with_metadata_are_refused(shipped: Path) -> None:
    _tag(shipped)
    BundlePolicy(shipped)  # tagged as the exporter tags them, the bundle loads
    _swap(shipped, "receiving.onnx", "putaway.onnx")
    with pytest.raises(BundleError) as err:
        BundlePolicy(shipped)
    message = str(err.value)  # files are checked in name order: putaway.onnx first
    assert "putaway.onnx (sector 'putaway')" in message
    assert "exported for sectors ['receiving']" in message


def test_metadata_of_another_policy_mode_is_refused(shipped: Path) -> None:
    model = onnx.load(str(shipped / "picking.onnx"))
    onnx.helper.set_model_props(model, {MODE_METADATA: "shared"})
    onnx.save(model, str(shipped / "picking.onnx"))
    _rewrite_checksums(shipped)
    with pytest.raises(BundleError, match=r"picking\.onnx .*policy mode 'shared'"):
        BundlePolicy(shipped)


@pytest.mark.parametrize(
    ("n_in", "n_out", "refused"),
    [
        (len(FEATURE_NAMES), 21, r"output 'logits' has shape \['batch', 21\].*\[batch, 22\]"),
        (len(FEATURE_NAMES) + 5, 22, r"input 'obs' has shape \['batch', 42\].*\[batch, 37\]"),
    ],
)
def test_a_file_of_the_wrong_shape_is_refused(
    shipped: Path, n_in: int, n_out: int, refused: str
) -> None:
    """A file whose shapes do not fit its sector (another bundle's or mode's) is refused,
    naming the file and the sector, even with its checksum recorded."""
    onnx.save(_linear_model(n_in, n_out), str(shipped / "putaway.onnx"))
    _rewrite_checksums(shipped)
    with pytest.raises(BundleError, match=refused) as err:
        BundlePolicy(shipped)
    assert "putaway.onnx (sector 'putaway')" in str(err.value)


def test_the_right_shape_from_elsewhere_loads(shipped: Path) -> None:
    """The shape check refuses what does not fit, not what merely differs."""
    onnx.save(_linear_model(len(FEATURE_NAMES), 22), str(shipped / "putaway.onnx"))
    _rewrite_checksums(shipped)
    assert BundlePolicy(shipped).version.startswith("1+")


N_SECTORS, N_FEAT, WIDTH = 5, len(FEATURE_NAMES), 22  # the shipped scenario's


@pytest.mark.parametrize(
    ("mode", "n_in", "n_out", "refused"),
    [
        ("shared", N_FEAT + N_SECTORS, WIDTH, None),
        ("shared", N_FEAT, WIDTH, r"input 'obs' has shape \['batch', 37\].*\[batch, 42\]"),
        ("centralised", N_FEAT * N_SECTORS, WIDTH * N_SECTORS, None),
        ("centralised", N_FEAT * N_SECTORS, WIDTH, r"output 'logits' .*\[batch, 110\]"),
    ],
)
def test_one_file_modes_are_checked_for_every_sector(
    shipped: Path, mode: str, n_in: int, n_out: int, refused: str | None
) -> None:
    manifest = _manifest_of(shipped)
    for file in manifest.files:
        (shipped / file).unlink()
    onnx.save(_linear_model(n_in, n_out), str(shipped / "one.onnx"))
    write_manifest(
        shipped,
        manifest.model_copy(
            update={
                "policy_mode": mode,
                "policy_files": dict.fromkeys(manifest.sectors, "one.onnx"),
                "files": file_entries(shipped, ["one.onnx"]),
            }
        ),
    )
    if refused is None:
        assert BundlePolicy(shipped).version.startswith("1+")
        return
    with pytest.raises(BundleError, match=refused) as err:
        BundlePolicy(shipped)
    assert f"one.onnx (sectors {manifest.sectors})" in str(err.value)


def test_a_shared_policy_in_several_files_is_refused(shipped: Path) -> None:
    manifest = _manifest_of(shipped)
    write_manifest(shipped, manifest.model_copy(update={"policy_mode": "shared"}))
    with pytest.raises(BundleError, match="'shared' needs one policy file for every sector"):
        BundlePolicy(shipped)


def test_the_exporter_tags_each_file_with_its_sectors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from training.export import export_module

    path = tmp_path / "packing.onnx"
    obs = np.zeros((4, len(FEATURE_NAMES)), np.float32)
    metadata = {SECTORS_METADATA: json.dumps(["packing"]), MODE_METADATA: "per_sector"}
    nvec = np.array([6, 6, 6, 2, 2])
    export_module(torch.nn.Linear(len(FEATURE_NAMES), 22), obs.shape[1], nvec, path, obs, metadata)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props == metadata


# --------------------------------------------------------------------------- served


def test_the_server_reports_the_contents_version(shipped: Path, tmp_path: Path) -> None:
    """/v1/policy, X-Policy-Version, decisions and the decision log carry the version with
    the digest; a reload of the same manifest version with swapped files changes it, and a
    swap the metadata exposes is refused."""
    from test_server import ADMIN_KEY, API_KEY, start_server, stop

    _tag(shipped)
    swapped = _copy(shipped, tmp_path / "swapped")
    _swap(swapped, "picking.onnx", "packing.onnx")
    untagged = _copy(SHIPPED_BUNDLE, tmp_path / "untagged")
    expected = BundlePolicy(shipped).version
    assert expected != BundlePolicy(untagged).version
    model = OperationModel(load_scenario("default"), rng=np.random.default_rng(3))
    model.run_minutes(600)
    body = {"snapshot": model.snapshot().model_dump(mode="json"), "impact": False}
    srv = start_server(shipped, tmp_path / "decisions.jsonl")
    key = {"X-API-Key": API_KEY}
    try:
        r = httpx.get(f"{srv.url}/v1/policy", headers=key)
        assert r.status_code == 200
        assert r.json()["version"] == expected == r.headers["x-policy-version"]
        assert r.json()["manifest"]["version"] == "1"
        r = httpx.post(f"{srv.url}/v1/recommend", json=body, headers=key, timeout=60)
        assert r.status_code == 200, r.text
        rec = r.json()
        assert rec["policy_version"] == expected == r.headers["x-policy-version"]
        (logged,) = [
            x
            for x in map(json.loads, srv.log.read_text().splitlines())
            if x.get("id") == rec["recommendation_id"]
        ]
        assert logged["policy"]["version"] == expected

        admin = {"X-API-Key": ADMIN_KEY}
        r = httpx.post(
            f"{srv.url}/v1/policy/reload", json={"path": str(swapped)}, headers=admin, timeout=60
        )
        assert r.status_code == 422
        assert "packing.onnx (sector 'packing')" in r.text
        r = httpx.post(
            f"{srv.url}/v1/policy/reload", json={"path": str(untagged)}, headers=admin, timeout=60
        )
        assert r.status_code == 200, r.text
        assert r.json()["previous_version"] == expected
        new = BundlePolicy(untagged).version
        assert r.json()["policy_version"] == new == r.headers["x-policy-version"]
        r = httpx.get(f"{srv.url}/v1/policy", headers=key)
        assert r.json()["version"] == new == r.headers["x-policy-version"]
    finally:
        stop(srv.proc)

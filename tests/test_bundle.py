"""Reading a policy bundle: file-system failures are :class:`BundleError` naming the path.

A server reloading a bundle, or ``synctwin serve --policy DIR``, must answer with a
message that says which bundle and which file is unusable, never with a raw
``OSError`` traceback. The bundles here are stand-ins: ``read_manifest`` checks the
manifest and checksums, not the ONNX inside, so any bytes will do.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from policies.bundle import (
    MANIFEST,
    BundleError,
    Manifest,
    ScenarioRef,
    file_entries,
    read_manifest,
    write_manifest,
)


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

"""The policy bundle: the one artefact that leaves training and enters serving.

A bundle is a directory::

    manifest.json        what the policies are, what they expect, and checksums
    <sector>.onnx        one ONNX policy per sector (or ``shared.onnx`` for a shared policy)

Loading verifies the schema version, that every file listed is present with the
recorded sha256, and that the feature list and action schema match what this
version of the twin produces, and fails with a :class:`BundleError` that says which
of these is wrong. This module imports neither torch nor ray.

A bundle is identified by its manifest's ``version`` *and* its contents:
:attr:`Manifest.content_digest` is a sha256 over what decides the policies'
behaviour (sectors, policy mode, the sector -> file mapping, feature names, action
schema, scenario, and every file's checksum, which loading verifies against the
bytes), and :attr:`Manifest.served_version` (``"<version>+<12 hex of the digest>"``)
is the version a server reports. Swapping two files, or changing any byte of one,
changes it even when the manifest's ``version`` stays the same.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

BUNDLE_SCHEMA_VERSION: Final = 1
MANIFEST = "manifest.json"
#: hex characters of the content digest in the served version
DIGEST_CHARS: Final = 12
#: ONNX metadata (``metadata_props``) an exporter writes and loading checks when present:
#: the JSON list of the sectors a file serves, in scenario order, and the policy mode
SECTORS_METADATA: Final = "synctwin.sectors"
MODE_METADATA: Final = "synctwin.policy_mode"


class BundleError(ValueError):
    """A bundle that cannot be used; the message says which file or field and why."""


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class ScenarioRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    digest: str


class Manifest(BaseModel):
    """``manifest.json``: everything a server needs to trust and use the policies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = BUNDLE_SCHEMA_VERSION
    name: str
    version: str
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    scenario: ScenarioRef
    sectors: list[str]
    policy_mode: Literal["per_sector", "shared", "centralised"] = "per_sector"
    policy_files: dict[str, str] = Field(description="sector -> ONNX file name in the bundle")
    feature_names: list[str]
    action_schema: dict[str, Any] = Field(
        description="{max_lend, max_flex, sectors: {sector: ActionCodec.schema()}}"
    )
    files: dict[str, FileEntry] = Field(description="file name -> checksum and size")
    training: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)

    @cached_property  # a frozen manifest: hashed once, not on every response
    def content_digest(self) -> str:
        """sha256 (hex) of the bundle's contents: what the policies are and do.

        Covers the scenario, sectors, policy mode, policy files, feature names,
        action schema and each file's sha256 under its name; not the name, version,
        creation time or the training and evaluation records. The file checksums
        stand for the files' bytes once :func:`read_manifest` has verified them.
        """
        content = {
            "schema_version": self.schema_version,
            "scenario": self.scenario.model_dump(mode="json"),
            "sectors": list(self.sectors),
            "policy_mode": self.policy_mode,
            "policy_files": dict(self.policy_files),
            "feature_names": list(self.feature_names),
            "action_schema": self.action_schema,
            "files": {name: entry.sha256 for name, entry in self.files.items()},
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @cached_property
    def served_version(self) -> str:
        """``"<version>+<first 12 hex of content_digest>"``: changes with any content."""
        return f"{self.version}+{self.content_digest[:DIGEST_CHARS]}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entries(directory: Path, names: list[str]) -> dict[str, FileEntry]:
    """Checksums of ``names`` inside ``directory``."""
    return {
        n: FileEntry(sha256=sha256_file(directory / n), bytes=(directory / n).stat().st_size)
        for n in names
    }


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return path


def read_manifest(directory: Path) -> Manifest:
    """Read and verify a bundle's manifest and files (not yet its compatibility).

    Every failure is a :class:`BundleError` naming the bundle, including the file
    system's own (a file that cannot be read, a directory where a file should be, a
    name too long): a server reloading a bundle must answer with a clear message, not
    an ``OSError`` traceback.
    """
    directory = Path(directory)
    try:
        return _read_manifest(directory)
    except OSError as err:
        where = err.filename if err.filename is not None else directory
        raise BundleError(
            f"policy bundle {directory}: cannot read {where}: {err.strerror or err}"
        ) from None


def _read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise BundleError(f"policy bundle {directory}: not a directory")
    if path.is_dir():
        raise BundleError(f"policy bundle {directory}: {MANIFEST} is a directory, not a file")
    if not path.is_file():
        raise BundleError(f"policy bundle {directory}: no {MANIFEST}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(
            f"policy bundle {directory}: {MANIFEST} is not valid JSON: {err}"
        ) from None
    if isinstance(raw, dict) and raw.get("schema_version") != BUNDLE_SCHEMA_VERSION:
        raise BundleError(
            f"policy bundle {directory}: schema_version {raw.get('schema_version')!r} is not "
            f"supported (this SyncTwin reads version {BUNDLE_SCHEMA_VERSION})"
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:5]
        )
        raise BundleError(f"policy bundle {directory}: invalid {MANIFEST}: {problems}") from None
    for sector in manifest.sectors:
        if sector not in manifest.policy_files:
            raise BundleError(f"policy bundle {directory}: no policy file for sector {sector!r}")
    for name in set(manifest.policy_files.values()):
        if name not in manifest.files:
            raise BundleError(f"policy bundle {directory}: {name} has no checksum in the manifest")
    for name, entry in manifest.files.items():
        f = directory / name
        if f.is_dir():
            raise BundleError(f"policy bundle {directory}: {name} is a directory, not a file")
        if not f.is_file():
            raise BundleError(f"policy bundle {directory}: missing file {name}")
        if sha256_file(f) != entry.sha256:
            raise BundleError(
                f"policy bundle {directory}: checksum mismatch for {name} "
                "(the file is corrupt or was changed after export)"
            )
    return manifest

"""Paths as users type them: relative to the working directory, ``~``, spaces.

One owner for what every command does with a path argument: expand ``~`` (a shell does not
in ``--out=~/x`` or in quotes), check output paths before any work, and print paths so they
can be pasted back into a shell. Libraries that need absolute paths (RLlib's checkpoint
loader parses its argument as a URI) resolve them themselves.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, TypeVar, overload

P = TypeVar("P", bound=Path)


class OutputPathError(ValueError):
    """An output path that cannot be written (an existing file where a folder goes, ...)."""


@overload
def user_path(value: None) -> None: ...
@overload
def user_path(value: P) -> P: ...
@overload
def user_path(value: list[P]) -> list[P]: ...
def user_path(value: Any) -> Any:
    """A Typer callback for path options: expand ``~`` (relative paths stay relative).

    A shell expands ``~`` only at the start of a word, so ``--out=~/runs`` or a quoted
    ``"~/my runs"`` would otherwise name a folder called ``~``.
    """
    if value is None:
        return None
    if isinstance(value, list):
        return [user_path(v) for v in value]
    return type(value)(os.path.expanduser(value))


def _no_file_above(path: Path, what: str) -> None:
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputPathError(f"{what} {path}: {parent} is a file, not a directory")


def check_output_dir(path: Path, what: str = "--out") -> Path:
    """Refuse, before any work, an output directory that is a file or lies under one."""
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path}: is a file, not a directory")
    _no_file_above(path, what)
    return path


def check_output_file(path: Path, what: str = "--out") -> Path:
    """Refuse, before any work, an output file that is a directory or lies under a file."""
    if path.is_dir():
        raise OutputPathError(f"{what} {path}: is a directory; give a file name")
    _no_file_above(path, what)
    return path


def shell_path(path: str | Path) -> str:
    """``path`` as it can be pasted into a shell (quoted when it holds spaces and the like)."""
    return shlex.quote(str(path))


def scenario_arg(text: str) -> str:
    """A ``--scenario`` value as other processes can use it: a built-in name stays as is, a
    file becomes its absolute path (``~`` expanded), so Ray workers, a run's ``run.json``
    and later commands find it whatever their working directory."""
    path = Path(os.path.expanduser(text))
    if path.suffix in {".yaml", ".yml"} or path.is_file():
        return str(path.resolve())
    return text

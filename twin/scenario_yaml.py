"""Reading scenario YAML: built-ins by name, files by path, ``extends:`` resolved.

Returns the raw mapping (validation is :mod:`twin.scenario`'s); refuses duplicate keys
and names the file, line and column of a syntax error.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from twin.scenario_checks import ScenarioError


def builtin_names() -> list[str]:
    """Names of the scenarios shipped with the package."""
    root = resources.files("twin") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys instead of silently keeping the last."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def _yaml_problem(err: yaml.YAMLError, text: str) -> str:
    """``at line L, column C: problem`` (1-based) for a YAML error.

    PyYAML's own text names the stream ``"<unicode string>"`` (it parsed a string) and
    spreads over several lines; the caller names the file instead.
    """

    def where(line: int, column: int) -> str:  # PyYAML counts from 0
        return f"line {line + 1}, column {column + 1}"

    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        problem = err.problem or "invalid syntax"
        if err.context and err.context_mark is not None:
            start = err.context_mark
            problem += f" ({err.context} from {where(start.line, start.column)})"
        elif err.context:
            problem += f" ({err.context})"
        return f"at {where(err.problem_mark.line, err.problem_mark.column)}: {problem}"
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position)
        column = err.position - (text.rfind("\n", 0, err.position) + 1)
        char = f"character #x{err.character:04x}: " if isinstance(err.character, int) else ""
        return f"at {where(line, column)}: {char}{err.reason}"
    return "(no position given): " + str(err).replace('"<unicode string>"', "the file")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into ``base``: mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(name_or_path: str | Path, chain: tuple[str, ...] = ()) -> tuple[dict, str]:
    """The raw mapping of a scenario, with ``extends:`` resolved, and a label for errors."""
    name = str(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.suffix in {".yaml", ".yml"}:
        if not path.is_file():
            raise ScenarioError(f"scenario file not found: {path}")
        text, source = path.read_text(encoding="utf-8"), str(path)
    elif name in builtin_names():
        text = (resources.files("twin") / "scenarios" / f"{name}.yaml").read_text("utf-8")
        source = f"{name!r} (built-in)"
    elif path.is_file():
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        raise ScenarioError(
            f"unknown scenario {name!r}: not a file, and not a built-in "
            f"(built-ins: {', '.join(builtin_names())})"
        )
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ScenarioError(
            f"invalid scenario {source}: not valid YAML {_yaml_problem(err, text)}"
        ) from None
    if not isinstance(data, dict):
        raise ScenarioError(f"invalid scenario {source}: expected a mapping at the top level")
    parent = data.pop("extends", None)
    if parent is not None:
        if source in chain:
            raise ScenarioError(f"invalid scenario {source}: 'extends' loops back to itself")
        if not Path(str(parent)).is_absolute() and path.parent != Path() and path.is_file():
            candidate = path.parent / str(parent)
            parent = candidate if candidate.is_file() else parent
        base, _ = read_yaml(parent, (*chain, source))
        data = _merge(base, data)
    return data, source

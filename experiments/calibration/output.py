"""Writing a fitted scenario as the YAML a planner reads and edits.

The file must read like a hand-written scenario (clock times as ``"08:30"``, short
lists on one line, no ``null`` fields) and must load back to exactly the scenario
that was fitted: :func:`write_scenario` checks the digest after writing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from experiments.calibration.common import clock
from experiments.calibration.data import CalibrationError
from experiments.calibration.fit import Calibration
from twin.scenario import MINUTES_PER_DAY, ScenarioError


class _FlowListDumper(yaml.SafeDumper):
    """Lists of plain values on one line (``hourly_rates: [1.0, 2.0, ...]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(x, dict | list) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(list, _represent_list)


def scenario_yaml(calibration: Calibration) -> str:
    """The fitted scenario as YAML text, with a header saying where it came from."""
    data = _without_none(calibration.scenario.model_dump(mode="json"))
    for c in data["item_classes"]:
        due = c["due"]
        if "cutoffs" in due:
            due["cutoffs"] = [clock(m) for m in due["cutoffs"]]
        else:
            due.pop("lead_minutes", None)
    for sh in data["workforce"]["shifts"]:
        for key in ("start", "end"):
            m = sh[key]
            sh[key] = clock(m) if m < MINUTES_PER_DAY else "24:00"
        for b in sh["breaks"]:
            b["start"] = clock(b["start"])
    s = calibration.stats
    header = (
        f"# Calibrated by `synctwin calibrate` from {calibration.table.source}\n"
        f"# base scenario: {calibration.base.name}; {s['rows_used']:,} of {s['rows_read']:,} "
        f"rows used ({s['rows_rejected']:,} rejected); {calibration.window.days} day(s).\n"
    )
    body = yaml.dump(data, Dumper=_FlowListDumper, sort_keys=False, width=100)
    return header + body


def _without_none(obj: Any) -> Any:
    """Drop ``None`` values from mappings (every such field defaults to ``None``)."""
    if isinstance(obj, dict):
        return {k: _without_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_without_none(v) for v in obj]
    return obj


def write_scenario(calibration: Calibration, path: Path) -> Path:
    """Write the scenario YAML and check it loads back to the same scenario.

    Raises:
        CalibrationError: the written file does not load back identically (a bug).
    """
    from twin.scenario import load_scenario

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scenario_yaml(calibration), encoding="utf-8")
    try:
        loaded = load_scenario(path)
    except ScenarioError as err:
        raise CalibrationError(f"wrote {path}, but it does not load back: {err}") from None
    if loaded.digest != calibration.scenario.digest:
        raise CalibrationError(f"wrote {path}, but it loads back as a different scenario")
    return path


def scenario_name(out: Path) -> str:
    """A valid scenario name from an output file name (``My Site.yaml`` -> ``my-site``)."""
    stem = re.sub(r"[^a-z0-9_-]+", "-", Path(out).stem.lower()).strip("-_")
    return stem if stem and re.match(r"^[a-z0-9]", stem) else "calibrated"

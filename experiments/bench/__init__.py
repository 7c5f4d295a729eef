"""Benchmarks: each prints numbers and writes JSON (``synctwin bench ...``)."""

from __future__ import annotations

import os
import platform
from typing import Any


def machine() -> dict[str, Any]:
    """What a benchmark's numbers were taken on (with the load when it started)."""
    return {
        "python": platform.python_version(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }

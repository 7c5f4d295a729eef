"""The package layering holds at run time, not only in import-linter's static graph."""

from __future__ import annotations

import subprocess
import sys

BLOCK_AND_IMPORT = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed here")
        return None

sys.meta_path.insert(0, Block())
for module in {modules!r}:
    __import__(module)
print("ok")
"""


def _imports_without(modules: list[str], blocked: set[str]) -> subprocess.CompletedProcess:
    code = BLOCK_AND_IMPORT.format(modules=modules, blocked=blocked)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_the_policy_server_needs_no_gymnasium_ray_or_torch() -> None:
    """The serve extra installs onnxruntime and the web stack, not the RL stack."""
    proc = _imports_without(
        ["policies.server", "policies.runtime", "policies.explain", "policies.impact"],
        {"gymnasium", "ray", "torch", "pettingzoo"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_the_simulation_needs_no_rl_stack() -> None:
    proc = _imports_without(
        ["twin.model", "twin.runner", "twin.features", "twin.spaces", "agents.lookahead"],
        {"gymnasium", "ray", "torch", "pettingzoo", "fastapi"},
    )
    assert proc.returncode == 0, proc.stderr


def test_the_block_really_blocks() -> None:
    proc = _imports_without(["twin.env"], {"gymnasium"})
    assert proc.returncode != 0 and "gymnasium is not installed here" in proc.stderr

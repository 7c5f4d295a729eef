"""Fixtures shared by several test modules.

``policy_bundle``: the shipped policy bundle of the built-in ``default`` scenario
(``policies/default``, reproducible by the command in the README's Training section).
Tests must not modify it: copy it first.

``wait_ready(proc, url)``: wait until a ``synctwin serve`` subprocess answers ``/readyz``
(``from conftest import wait_ready``; pytest puts this directory on ``sys.path``).

``run(cwd, *args)``: the installed ``synctwin`` command as a user runs it, from ``cwd``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

SHIPPED_BUNDLE = Path(__file__).resolve().parent.parent / "policies" / "default"


@pytest.fixture(scope="session")
def policy_bundle() -> Path:
    """The shipped bundle of ``default`` (read-only: copy it to change it)."""
    assert (SHIPPED_BUNDLE / "manifest.json").is_file(), f"missing {SHIPPED_BUNDLE}"
    return SHIPPED_BUNDLE


def wait_ready(
    proc: subprocess.Popen,
    url: str,
    timeout: float = 120.0,
    *,
    interval: float = 0.1,
    request_timeout: float = 1.0,
) -> None:
    """Wait until the server ``proc`` at ``url`` answers ``GET /readyz`` with 200.

    Raises:
        RuntimeError: the process exited first (its stderr, if piped, in the message).
        TimeoutError: not ready within ``timeout`` seconds (the process is killed).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stderr = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"server exited {proc.returncode}: {stderr}")
        try:
            if httpx.get(f"{url}/readyz", timeout=request_timeout).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(interval)
    proc.kill()
    raise TimeoutError(f"server not ready in {timeout:g} s")


CLI = str(Path(sys.executable).with_name("synctwin"))  # the installed console command


def run(
    cwd: Path, *args: str, ok: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``synctwin ARGS`` in ``cwd`` with ``HOME=cwd`` (so ``~`` is a folder of the test's)."""
    proc = subprocess.run(
        [CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HOME": str(cwd), "COLUMNS": "200"},
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def stop_server(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Stop a server a test started: Ctrl-C, a kill after ``timeout`` s, its pipes closed.

    An open pipe of a finished process is a ``ResourceWarning`` when the collector
    frees it, in whichever later test happens to be running then.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()

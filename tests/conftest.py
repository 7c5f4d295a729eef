"""Fixtures shared by several test modules.

``policy_bundle``: the shipped policy bundle of the built-in ``default`` scenario
(``policies/default``, reproducible by the command in the README's Training section).
Tests must not modify it: copy it first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHIPPED_BUNDLE = Path(__file__).resolve().parent.parent / "policies" / "default"


@pytest.fixture(scope="session")
def policy_bundle() -> Path:
    """The shipped bundle of ``default`` (read-only: copy it to change it)."""
    assert (SHIPPED_BUNDLE / "manifest.json").is_file(), f"missing {SHIPPED_BUNDLE}"
    return SHIPPED_BUNDLE

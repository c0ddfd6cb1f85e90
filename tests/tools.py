"""Tests that drive an outside tool (a Debian package, an npm parser) skip with a reason when it is
missing on a developer's machine, and fail in CI, where `.ci/run` installs it and sets ROUTER_CI=1."""

from __future__ import annotations

import os

import pytest


def need(available: bool, reason: str) -> None:
    if available:
        return
    if os.environ.get("ROUTER_CI"):
        pytest.fail(f"CI must have this: {reason}")
    pytest.skip(reason)


def need_tool(command: str, package: str) -> str:
    """The path of `command`, from the Debian `package` that .ci/run installs."""
    import shutil

    path = shutil.which(command)
    need(path is not None, f"{command} not installed (Debian package {package})")
    assert path is not None
    return path

"""Debian tools the tests drive: skipped with a reason on a machine without them, but a failure
in CI (env CI set), where .ci/run installs them and a silent skip would hide a broken check."""

from __future__ import annotations

import os
import shutil

import pytest


def need_tool(command: str, package: str) -> str:
    path = shutil.which(command)
    if path is None:
        reason = f"{command} not installed (Debian package {package}; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI is set: the check must run in CI")
        pytest.skip(reason)
    return path

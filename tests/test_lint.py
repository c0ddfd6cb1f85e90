"""The project's pinned linters stay clean (ruff and mypy, configured in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("tool", [["ruff", "check", "."], ["mypy"]])
def test_clean(tool: list[str]) -> None:
    exe = Path(sys.executable).parent / tool[0]
    if not exe.exists() and shutil.which(tool[0]) is None:
        pytest.skip(f"{tool[0]} is not installed")
    out = subprocess.run([str(exe) if exe.exists() else tool[0], *tool[1:]], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]

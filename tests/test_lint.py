"""The project's pinned linters stay clean (ruff check, ruff format, mypy: configured in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("tool", [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]])
def test_clean(tool: list[str]) -> None:
    exe = Path(sys.executable).parent / tool[0]
    if not exe.exists() and shutil.which(tool[0]) is None:
        pytest.skip(f"{tool[0]} is not installed")
    out = subprocess.run(
        [str(exe) if exe.exists() else tool[0], *tool[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        pytest.skip("import-linter is not installed")
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # the tree in `cwd`, not the installed one
    return subprocess.run(
        [str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def test_import_contracts_hold() -> None:
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "4 kept, 0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("router/admin/api.py", "import sqlite3", "only the storage backend"),
        ("channels/http/app.py", "import sqlite_utils", "only the storage backend"),
        (
            "router/dispatch/dispatcher.py",
            "import psycopg",
            "only the storage backend (router.storage.postgres)",
        ),
        ("engine/runner.py", "import channels.intake", "router -> channels -> engine"),
        ("config/schema.py", "from router import journal", "router -> channels -> engine"),
        ("channels/http/forms.py", "from channels.http import app", "none imports"),
    ],
)
def test_import_contracts_catch_a_forbidden_import(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    for package in ("router", "channels", "engine", "config"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    assert _lint_imports(tmp_path).returncode == 0  # the copy is clean before the edit
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    out = _lint_imports(tmp_path)
    assert out.returncode == 1, out.stdout[-3000:]
    assert f"{broken}" in out.stdout and "BROKEN" in out.stdout, out.stdout[-3000:]
    assert module.removesuffix(".py").replace("/", ".") in out.stdout

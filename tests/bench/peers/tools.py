"""Getting the peers onto this machine: Debian packages with apt-get, npm packages into a cache
directory outside the repo (nothing from node_modules is ever committed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.peers.procs import Skip

DEFAULT_TOOLS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "router-bench"

# Answers for the packages that ask questions on install (postfix asks what kind of mail system).
DEBCONF = {"postfix": "postfix postfix/main_mailer_type select No configuration\n"}


@dataclass
class Context:
    work: Path  # a temporary directory for this run: configs, data dirs, logs
    tools: Path  # where npm peers are installed, kept between runs
    install: bool  # False: print the install command instead of running it


def which(command: str) -> str | None:
    # smtp-source and smtp-sink live in /usr/sbin, which a non-root PATH may lack.
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")


def ensure_command(ctx: Context, command: str, package: str) -> str:
    """The path of `command`, installing Debian's `package` first if it is missing."""
    found = which(command)
    if found:
        return found
    hint = f"apt-get install -y --no-install-recommends {package}"
    if not ctx.install or os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Skip(f"{command} not found; install it with: sudo {hint}")
    print(f"  {command} not found: {hint}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if package in DEBCONF:
        subprocess.run(["debconf-set-selections"], input=DEBCONF[package], text=True, check=False)
    attempt = subprocess.run(hint.split(), capture_output=True, text=True, env=env)
    if attempt.returncode != 0:  # an old package list is the usual cause
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        attempt = subprocess.run(hint.split(), capture_output=True, text=True, env=env)
    found = which(command)
    if not found:
        raise Skip(f"`{hint}` failed: {attempt.stderr.strip()[-400:]}")
    return found


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def package_version(path: Path) -> str:
    """The `version` of a package.json, or "?"."""
    data = _read_json(path)
    return str(data.get("version", "?")) if isinstance(data, dict) else "?"


def ensure_npm(ctx: Context, name: str, manifest: dict[str, Any], entry: str) -> Path:
    """Install `manifest` (a package.json) into `tools/name` unless it is already there with the
    same manifest; returns `tools/name/entry` (the peer's main script)."""
    node = shutil.which("node")
    if node is None or not shutil.which("npm"):
        raise Skip("node/npm not found; install them with: sudo apt-get install -y nodejs npm")
    folder = ctx.tools / name
    wanted = json.dumps(manifest, indent=2) + "\n"
    script = folder / entry
    manifest_path = folder / "package.json"
    if script.exists() and _read_json(manifest_path) == manifest:
        return script
    command = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"]
    if not ctx.install:
        raise Skip(
            f"not installed; run: mkdir -p {folder} && cd {folder} && "
            f"echo '{json.dumps(manifest)}' > package.json && {' '.join(command)}"
        )
    deps = ", ".join(f"{k}@{v}" for k, v in manifest["dependencies"].items())
    print(f"  installing {deps} into {folder} (first run only; may take minutes)", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(wanted)
    try:
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise Skip(f"`npm install` in {folder} took more than 30 minutes") from None
    if result.returncode != 0 or not script.exists():
        manifest_path.unlink(missing_ok=True)  # so that the next run tries again
        raise Skip(f"`npm install` in {folder} failed ({result.returncode}): {result.stderr.strip()[-600:]}")
    return script

"""The installed version, from the package metadata (one source of truth: pyproject.toml)."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "router-daemon"


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"

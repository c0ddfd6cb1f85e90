"""What every `router` verb shares: exit codes, the config and storage it works on, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config import Config, ConfigError
from router.exitcodes import EX_CONFIG, EX_UNAVAILABLE, EXIT_CODES, NOT_FOUND, OK, USAGE

if TYPE_CHECKING:
    from router.storage import Storage

DEFAULT_CONFIG = "router.toml"

__all__ = ["EXIT_CODES", "EX_CONFIG", "EX_UNAVAILABLE", "NOT_FOUND", "OK", "USAGE", "Exit"]


class Exit(Exception):
    """Ends a verb with a one-line message on stderr and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        default=os.environ.get("ROUTER_CONFIG", DEFAULT_CONFIG),
        metavar="FILE",
        help=f"config file (default: $ROUTER_CONFIG or {DEFAULT_CONFIG})",
    )


def json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def print_issues(path: str, issues: Sequence[Any]) -> None:
    print(f"{path}: {len(issues)} problem(s):", file=sys.stderr)
    for issue in issues:
        print(f"  {issue}", file=sys.stderr)


def load(path: str) -> Config:
    from router.build import load_checked

    if not Path(path).is_file():
        raise Exit(EX_CONFIG, f"{path}: no such config file")
    try:
        cfg, _ = load_checked(Path(path))
    except ConfigError as exc:
        print_issues(path, exc.issues)
        raise SystemExit(EX_CONFIG) from None
    return cfg


@contextmanager
def opened(path: str) -> Iterator[tuple[Config, Storage]]:
    """The validated config and its data dir's storage, closed afterwards."""
    from router.daemon import open_storage
    from router.storage import StorageError

    cfg = load(path)
    try:
        storage = open_storage(cfg)
    except (OSError, StorageError) as exc:
        where = "[database] url" if cfg.database.url else f"data dir {cfg.router.data_dir}"
        raise Exit(EX_UNAVAILABLE, f"{where}: {str(exc).strip()}") from None
    try:
        yield cfg, storage
    finally:
        storage.close()


def dump(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value.replace("\n", "\\n")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "") -> str:
    """A header row and one line per row; each column as wide as its widest cell, so a long
    name widens its column instead of pushing the rest out of line. The last column is not
    padded (no trailing blanks)."""
    if not rows:
        return empty
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *cells]:
        padded = [text.ljust(widths[i]) for i, text in enumerate(row[:-1])]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)

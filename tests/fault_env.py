"""Hostile surroundings for the fault suite: a tiny filesystem under the data dir, another
process holding SQLite's write lock on the daemon's database, a webhook target that stalls."""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.standins import ThreadedServer

HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN IMMEDIATE")  # the write lock: other writers wait, then get SQLITE_BUSY
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
db.close()
"""


@contextmanager
def tiny_filesystem(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path`, unmounted on exit (lazily if something still holds it)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a {size} tmpfs at {path} (needs root / CAP_SYS_ADMIN): {mounted.stderr.strip()}"
        )
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> int:
    """Write `path` until the filesystem refuses (ENOSPC); the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return written
                chunk = chunk[: len(chunk) // 16]


@contextmanager
def write_lock(db_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds `BEGIN IMMEDIATE` on `db_path` until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        if holder.poll() is None:
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.flush()
            try:
                holder.wait(30)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait(10)


class _GatedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        owner: GatedTarget = self.server.owner  # type: ignore[attr-defined]
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with owner.lock:
            owner.calls += 1
        owner.gate.wait(60)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


class GatedTarget(ThreadedServer):
    """A webhook target that holds every call until `gate` is set; counts the calls."""

    handler_class = _GatedHandler

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.calls = 0

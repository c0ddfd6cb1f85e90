"""Prometheus values shared by the daemon's processes (main, HTTP workers, runners).

prometheus-client's multiprocess mode: every process writes its counters and histograms to
mmap files in one directory and `/metrics` (served by the main process) sums them, so runs done
by a runner process count like runs done in the main one. The mode is fixed when
prometheus_client is first imported, hence this module imports nothing of it and `router serve`
calls `share_metrics` first.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics(data_dir: Path | None, *, main: bool) -> None:
    """The main process makes the directory afresh (counters start at zero with the daemon, and a
    restart after `kill -9` reuses the same name instead of leaking one); its children inherit
    it through the environment. It lives in memory (/dev/shm), not in the data dir: metrics are
    not data, and a full or read-only data dir must not break counting."""
    if not main and ENV in os.environ:
        return
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    if data_dir is None:
        os.environ[ENV] = tempfile.mkdtemp(prefix="router-metrics-", dir=base)
        return
    key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:20]
    path = base / f"router-metrics-{key}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    os.environ[ENV] = str(path)


def forget_metrics() -> None:
    """The main process removes the directory when it exits."""
    path = os.environ.pop(ENV, None)
    if path:
        shutil.rmtree(path, ignore_errors=True)


def is_shared() -> bool:
    return ENV in os.environ

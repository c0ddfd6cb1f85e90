"""Prometheus values shared by the daemon's processes (main, HTTP workers, runners).

prometheus-client's multiprocess mode: every process writes its counters and histograms to
mmap files in one directory and `/metrics` (served by the main process) sums them, so runs done
by a runner process count like runs done in the main one. The mode is fixed when
prometheus_client is first imported, hence this module imports nothing of it and `router serve`
calls `share_metrics` first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics(data_dir: Path, *, main: bool) -> None:
    path = data_dir / "metrics"
    if main:
        shutil.rmtree(path, ignore_errors=True)  # counters start at zero with the daemon, as before
    path.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(path)


def is_shared() -> bool:
    return ENV in os.environ

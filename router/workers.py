"""`[http] workers = N`: N processes serve one port (SO_REUSEPORT) and share the data dir.

The main process runs everything; the N-1 extra processes run only the HTTP channel and the
dispatcher. They hand work to each other only through journal claims, the same contract that
several machines on PostgreSQL would use (SPEC §10). Schedules, SMTP and admin stay in the main
process.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger("router.workers")


class WorkerPool:
    def __init__(self, config_path: Path, count: int, extra_args: list[str]) -> None:
        self.config_path = config_path
        self.count = count
        self.extra_args = extra_args
        self.processes: dict[int, trio.Process] = {}
        self.stopping = False

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for index in range(1, self.count):
                nursery.start_soon(self._keep_running, index)
            task_status.started()

    async def _keep_running(self, index: int) -> None:
        delay = 0.5
        while not self.stopping:
            cmd = [sys.executable, "-m", "router.cli", "serve", "-c", str(self.config_path), "--worker", str(index),
                   *self.extra_args]
            proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.DEVNULL)
            self.processes[index] = proc
            log.info("worker started index=%d pid=%d", index, proc.pid)
            try:
                code = await proc.wait()
            finally:
                if proc.returncode is None:  # we are being cancelled: do not leave an orphan
                    proc.kill()
            self.processes.pop(index, None)
            if self.stopping:
                return
            log.warning("worker exited index=%d code=%s restart_in=%.1fs", index, code, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def send(self, signum: int) -> None:
        for proc in list(self.processes.values()):
            if proc.returncode is None:
                proc.send_signal(signum)

    async def stop(self, timeout: float) -> None:
        self.stopping = True
        self.send(signal.SIGTERM)
        with trio.move_on_after(timeout):
            for proc in list(self.processes.values()):
                await proc.wait()
        for proc in list(self.processes.values()):
            if proc.returncode is None:
                proc.kill()

"""The main process's children besides SMTP: extra HTTP workers and runner processes.

`[http] workers = N` starts N-1 more processes serving the same port (SO_REUSEPORT);
`[router] runners = M` starts M processes that run async workflows. They share the data dir
and hand work to each other only through journal claims, the same contract that several
machines on PostgreSQL would use (SPEC §10). Schedules, SMTP and admin stay in the main process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import structlog
import trio

from router.ops.forkserver import ForkedProcess, ForkServer, ForkServerGone

log = structlog.get_logger("router.workers")


LIFELINE_ENV = "ROUTER_LIFELINE_FD"
MAIN_PID_ENV = "ROUTER_MAIN_PID"  # a child's daemon: what names its runners' doorbells
MAIN_ONLY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")  # only the main process talks to systemd


def _told(lifeline: int) -> dict[str, str]:
    """What every child is told of its daemon, forked or started."""
    return {LIFELINE_ENV: str(lifeline), MAIN_PID_ENV: str(os.getpid())}


def _child_env(lifeline: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in MAIN_ONLY_ENV}
    return {**env, **_told(lifeline)}


def main_pid(is_main: bool) -> int:
    """The pid of this daemon's main process, in it and in the children it started."""
    if is_main:
        return os.getpid()
    return int(os.environ.get(MAIN_PID_ENV) or os.getppid())


def child_name(flag: str, index: int) -> str:
    """The process name (/proc/PID/comm, 15 bytes at most) of a forked child."""
    return f"router-{'run' if flag == '--runner' else 'http'}-{index}"


def lifeline() -> tuple[int, int]:
    """The pipe of die_with_parent, made before the fork server forks (it passes the read end
    on to the children and closes the write end)."""
    return os.pipe()


async def die_with_parent() -> None:
    """In a child: exit at once when the main process dies, even by SIGKILL. The child holds the
    read end of a pipe whose only write end the main process holds: when it dies the kernel
    closes that end and the read end becomes readable (EOF). An orphaned runner would go on
    running and claiming work beside the restarted daemon's own. (Not PR_SET_PDEATHSIG: that
    fires when the parent *thread* exits, and trio spawns processes from its worker threads,
    which end after 10 s idle.)"""
    fd = os.environ.get(LIFELINE_ENV)
    if fd is None:
        return
    await trio.lowlevel.wait_readable(int(fd))
    os._exit(1)  # like the SIGKILL that took the main process: no cleanup, claims lapse by lease


class WorkerPool:
    def __init__(
        self,
        config_path: Path,
        http_workers: int,
        runners: int,
        extra_args: list[str],
        *,
        fork_server: ForkServer | None = None,
        pipe: tuple[int, int] | None = None,
    ) -> None:
        self.config_path = config_path
        self.roles = [("--worker", i) for i in range(1, http_workers)] + [
            ("--runner", i) for i in range(1, runners + 1)
        ]
        self.extra_args = extra_args
        self.processes: dict[tuple[str, int], trio.Process | ForkedProcess] = {}
        self.stopping = False
        self.fork_server = fork_server
        # The lifeline (see die_with_parent): children inherit the read end only.
        self._lifeline_read, self._lifeline_write = pipe or lifeline()

    async def _start(self, flag: str, index: int) -> trio.Process | ForkedProcess:
        """Forked from the fork server when there is one (shares the loaded code: fast, small);
        a fresh interpreter otherwise."""
        if self.fork_server is not None:
            try:
                return await self.fork_server.spawn(
                    flag.lstrip("-"),
                    index=index,
                    name=child_name(flag, index),
                    env=_told(self._lifeline_read),
                    unset_env=MAIN_ONLY_ENV,
                )
            except ForkServerGone:
                log.warning("fork server gone; starting children as new processes")
                self.fork_server = None
        cmd = [
            sys.executable,
            "-m",
            "router.cli",
            "serve",
            "-c",
            str(self.config_path),
            flag,
            str(index),
            *self.extra_args,
        ]
        return await trio.lowlevel.open_process(
            cmd,
            stdin=subprocess.DEVNULL,
            env=_child_env(self._lifeline_read),
            pass_fds=(self._lifeline_read,),
        )

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for role in self.roles:
                nursery.start_soon(self._keep_running, role)
            task_status.started()

    async def _keep_running(self, role: tuple[str, int]) -> None:
        flag, index = role
        child = {flag.lstrip("-"): index}
        delay = 0.5
        while not self.stopping:
            proc = await self._start(flag, index)
            self.processes[role] = proc
            log.info("child started", **child, pid=proc.pid)
            try:
                code = await proc.wait()
            finally:
                if proc.returncode is None:  # we are being cancelled: do not leave an orphan
                    proc.kill()
            self.processes.pop(role, None)
            if self.stopping:
                return
            log.warning("child exited", **child, code=code, restart_in_s=round(delay, 3))
            await trio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def send(self, signum: int) -> None:
        for proc in list(self.processes.values()):
            if proc.returncode is None:
                proc.send_signal(signum)

    async def stop(self, *, grace: float) -> None:
        """SIGTERM every child; SIGKILL those still running after `grace` seconds."""
        self.stopping = True
        self.send(signal.SIGTERM)
        with trio.move_on_after(grace):
            for proc in list(self.processes.values()):
                await proc.wait()
        for proc in list(self.processes.values()):
            if proc.returncode is None:
                proc.kill()

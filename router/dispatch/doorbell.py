"""The doorbell: listening processes wake the runner processes when new work is journaled.

A hint, never the hand-off itself: the work is in the journal (claims decide who runs it) and
runners also poll, so a lost ring costs latency, not a signal. A datagram on a Linux abstract
UNIX socket (no file to clean up, no path-length limit), named after the database and the
daemon's main process (`Doorbells`), so daemons never ring each other's runners: not two on
separate data dirs, nor two on one data dir (a standby beside the active one: each drives its
own runners, the journal's claims share the work out). Rings are gathered: the appends of one
group commit all ring at once, and one datagram per runner carries the lot (a system call per
signal was 1.4 % of a listener's CPU).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
import trio

log = structlog.get_logger("router.doorbell")


@dataclass(frozen=True)
class Doorbells:
    """The doorbells of one daemon's runners: its database, and its main process's pid (which its
    children are told: router/ops/workers.py)."""

    db_path: Path
    daemon: int

    def address(self, index: int) -> str:
        key = hashlib.sha256(f"{self.db_path.resolve()}\0{self.daemon}".encode()).hexdigest()[:20]
        return f"\0router-{key}-runner-{index}"


class Doorbell:
    """The ringing side, in every process that receives signals."""

    def __init__(self, doorbells: Doorbells, runners: int) -> None:
        self.addresses = [doorbells.address(i) for i in range(1, runners + 1)]
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._rung = trio.Event()

    def ring(self) -> None:
        """New work is journaled: the runners hear of it once the tasks running now have run."""
        self._rung.set()

    async def run(self) -> None:
        """Send what `ring` gathered: one datagram per runner for every burst of rings. A ring
        after the swap below sets the next event, so none goes unsent."""
        while True:
            await self._rung.wait()
            self._rung = trio.Event()
            self._send()

    def _send(self) -> None:
        for address in self.addresses:
            try:
                self._sock.sendto(b"\1", address)
            except OSError:
                pass  # runner restarting or its queue full: it polls the journal anyway

    def close(self) -> None:
        self._sock.close()


async def listen(doorbells: Doorbells, index: int, on_ring: Callable[[], None]) -> None:
    """The runner's side: call `on_ring` once per burst of rings."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        while True:
            try:
                sock.bind(doorbells.address(index))
                break
            except OSError as exc:  # the previous runner with this index is still exiting
                log.info("doorbell busy; retrying", error=str(exc))
                await trio.sleep(0.5)
        while True:
            await trio.lowlevel.wait_readable(sock)
            while True:  # a burst of appends rings many times: one wake-up is enough
                try:
                    sock.recv(16)
                except BlockingIOError:
                    break
            on_ring()


def _bound(address: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(address)
        except OSError:
            return False
    return True


def runner_listening(doorbells: Doorbells, index: int) -> bool:
    """Whether runner `index` is up: it binds its doorbell once it is ready to run."""
    return _bound(doorbells.address(index))


async def wait_for_runners(doorbells: Doorbells, runners: int) -> None:
    """Return once every runner listens for its doorbell (it binds only when it is ready to run),
    so that the daemon reports ready with its runners up (the caller's cancel scope bounds it)."""
    addresses = [doorbells.address(i) for i in range(1, runners + 1)]
    while not all(_bound(a) for a in addresses):  # noqa: ASYNC110 - other processes bind them: no event to await
        await trio.sleep(0.05)

"""The fork server: the daemon's children forked from a copy of the already-loaded main process.

`router serve` imports everything, freezes the heap (`gc.freeze()`) and forks this server
before the trio loop starts (forking a process that runs trio's threads is unsafe). Later the
main process asks it, over a SOCK_SEQPACKET socketpair, for an HTTP worker, a runner or the SMTP
worker; it forks one and reports the PID, then the exit status. A child starts in milliseconds
(no interpreter start, no imports) and shares the code and the frozen objects of the main
process with it page for page until one of them writes there: the default daemon's runner went
from ~54 MB to a few MB of memory of its own.

    main (trio)                          fork server (blocking loop)         child
    spawn {"id", "kind", "index"} + fds ─► fork() ──────────────────────────► runs serve() / the SMTP worker
    ◄─ {"id", "pid"}                                                         os._exit(code)
    ◄─ {"pid", "code"}                    waitpid() on SIGCHLD

Lifetimes: the server exits when the main process's end of the socket closes (it died, even by
SIGKILL); runners and HTTP workers hold the lifeline pipe (router/ops/workers.py) and the SMTP
worker its link, so every child still dies with the main process. If the server itself is gone,
`spawn` raises `ForkServerGone` and the caller falls back to starting a fresh interpreter.
"""

from __future__ import annotations

import array
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

import trio

MAX_MESSAGE = 1 << 16
FD_LIMIT = 8


class ForkServerGone(Exception):
    """The fork server has exited: start the child some other way."""


def set_process_name(name: str) -> None:
    """/proc/PID/comm (what ps and top show): a forked child's command line is its parent's."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


Target = Callable[[dict[str, Any], list[int]], int]


def _serve(sock: socket.socket, targets: dict[str, Target], prepare: dict[str, Callable[[], None]]) -> None:
    """The server's loop: fork on request, report exits. Runs until the main process goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process to handle
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    set_process_name("router-forks")
    while True:
        try:
            readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            os.read(wake_r, 4096)
        while True:  # reap every child that has exited and say so
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            _send(sock, {"pid": pid, "code": os.waitstatus_to_exitcode(status)})
        if sock.fileno() not in readable:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, FD_LIMIT)
        except OSError:
            data, fds = b"", []
        if not data:
            return  # the main process is gone
        request = json.loads(data)
        target = targets[request["kind"]]
        loader = prepare.pop(request["kind"], None)
        if (
            loader is not None
        ):  # imports only that kind of child needs: done here once, shared by its restarts
            try:
                loader()
            except Exception:  # noqa: BLE001 - the child imports it again and reports the failure
                traceback.print_exc()
            gc.collect()
            gc.freeze()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                sock.close()
                os.close(wake_r)
                os.close(wake_w)
                signal.set_wakeup_fd(-1)
                for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(signum, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                env = request.get("env") or {}
                for key in request.get("unset_env") or ():
                    os.environ.pop(key, None)
                os.environ.update(env)
                set_process_name(str(request.get("name", "router-child")))
                code = target(request, fds)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - a child must never return into the server's loop
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        for fd in fds:
            os.close(fd)  # the child's now: a copy here would keep its sockets open after it exits
        _send(sock, {"id": request["id"], "pid": pid})


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    try:
        sock.send(json.dumps(message).encode())
    except OSError:
        pass  # the main process is gone; the loop ends at its next read


class ForkedProcess:
    """What the main process holds for a child of the fork server; the part of trio.Process
    the daemon uses (pid, returncode, poll, wait, send_signal, kill). Not its parent, it watches
    the child through a pidfd (readable once the child has exited; signals through it never reach
    a process that got its PID later), and learns the exit status from the fork server."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._reported = trio.Event()
        self._exited = False
        self._watching = False
        self._pidfd: int | None
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # already gone: the fork server's report says how
            self._pidfd = None

    def _set_exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self._reported.set()
        self._close()

    def _no_more_reports(self) -> None:
        """The reader of the fork server's reports has stopped (the daemon's shutdown, or the
        server is gone): `wait` learns the exit from the pidfd alone, at once (it waited 1 s for
        a report that could not come, on every stop of the daemon)."""
        self._reported.set()

    def _close(self) -> None:
        if self._pidfd is not None:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _gone(self) -> bool:
        return self._pidfd is None or bool(select.select([self._pidfd], [], [], 0)[0])

    def poll(self) -> int | None:
        if self.returncode is None and self._gone():
            self.returncode = -1  # exited; its status is on its way from the fork server
        return self.returncode

    async def wait(self) -> int:
        """Any number of tasks may wait (the pool's keeper and its stop() both do): one watches
        the pidfd, the others look again every 50 ms."""
        while self.returncode is None and self._pidfd is not None and not self._exited:
            if self._watching:
                await trio.sleep(0.05)
                continue
            self._watching = True
            try:
                await trio.lowlevel.wait_readable(self._pidfd)
                self._exited = True
            except trio.ClosedResourceError:
                pass  # the fork server's report came first and closed it
            finally:
                self._watching = False
        # The status comes from the fork server, which reaps it; if it cannot say (gone, or this
        # process's reader has stopped at shutdown), the exit is all there is to know.
        with trio.move_on_after(1.0):
            await self._reported.wait()
        if self.returncode is None:
            self.returncode = -1
        self._close()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkServer:
    """The main process's side."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.pid = pid
        self._raw = sock
        self._sock: trio.socket.SocketType | None = None
        self._next_id = 0
        self._waiting: dict[int, tuple[trio.Event, list[ForkedProcess]]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self.gone = False

    @classmethod
    def start(
        cls,
        targets: dict[str, Target],
        *,
        prepare: dict[str, Callable[[], None]] | None = None,
        close_in_server: tuple[int, ...] = (),
    ) -> ForkServer:
        """Fork the server now (before trio runs). `prepare[kind]`: imports for that kind only, done
        in the server before its first such child. `close_in_server`: fds only the main process
        may hold (the lifeline's write end)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        gc.collect()
        gc.freeze()  # the collector never writes to these objects again: their pages stay shared
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                for fd in close_in_server:
                    os.close(fd)
                _serve(theirs, targets, dict(prepare or {}))
            finally:
                os._exit(0)
        theirs.close()
        return cls(ours, pid)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Read the server's reports until it goes (children are watched through their pidfds
        then: that needs no parenthood)."""
        self._sock = trio.socket.from_stdlib_socket(self._raw)
        task_status.started()
        try:
            while True:
                try:
                    data = await self._sock.recv(MAX_MESSAGE)
                except OSError:
                    data = b""
                if not data:
                    break
                message = json.loads(data)
                if "id" in message:
                    event, out = self._waiting.pop(message["id"])
                    child = ForkedProcess(message["pid"])
                    self._children[child.pid] = child
                    out.append(child)
                    event.set()
                else:
                    gone = self._children.pop(message["pid"], None)
                    if gone is not None:
                        gone._set_exit(int(message["code"]))
        finally:
            self.gone = True
            for event, _ in self._waiting.values():
                event.set()
            for child in self._children.values():
                child._no_more_reports()

    async def spawn(
        self,
        kind: str,
        *,
        index: int = 0,
        name: str,
        env: dict[str, str] | None = None,
        unset_env: tuple[str, ...] = (),
        fds: tuple[int, ...] = (),
    ) -> ForkedProcess:
        if self.gone or self._sock is None:
            raise ForkServerGone()
        self._next_id += 1
        request_id = self._next_id
        event, out = trio.Event(), list[ForkedProcess]()
        self._waiting[request_id] = (event, out)
        request = {
            "id": request_id,
            "kind": kind,
            "index": index,
            "name": name,
            "env": env or {},
            "unset_env": list(unset_env),
        }
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        try:
            await self._sock.sendmsg([json.dumps(request).encode()], ancillary)
        except OSError as exc:
            self._waiting.pop(request_id, None)
            raise ForkServerGone() from exc
        await event.wait()
        if not out:
            raise ForkServerGone()
        return out[0]

    def close(self) -> None:
        self._raw.close()

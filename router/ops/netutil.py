"""Listening sockets, made by us so several worker processes can share one port."""

from __future__ import annotations

import errno
import resource
import socket
import time
from typing import Any

import structlog

from config.units import parse_listen

log = structlog.get_logger("router.daemon")


def raise_fd_limit() -> int:
    """Lift the soft limit on open files to the hard one and return it. Every connection holds a
    descriptor, and a daemon stuck at a soft limit of 1024 stops accepting (and can no longer
    open files or the journal) after a thousand idle clients. Child processes inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # e.g. a hard limit above the kernel's nr_open
            log.warning("could not raise the open-files limit", soft=soft, hard=hard, error=str(exc))
    return int(soft)


class ListenError(Exception):
    """A listener cannot bind: one line for the operator, `http.listen 127.0.0.1:8080: address
    already in use`, instead of a traceback."""

    def __init__(self, setting: str, address: str, error: OSError) -> None:
        reason = (error.strerror or str(error)).lower()
        super().__init__(f"{setting} {address}: {reason}")


def listen_socket(
    address: str, *, reuse_port: bool = False, backlog: int = 1024, setting: str = "listen"
) -> socket.socket:
    host, port = parse_listen(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(setting, address, exc) from exc
    sock.setblocking(False)
    return sock


def probe_listen(setting: str, address: str, *, retry: float = 0.0) -> None:
    """Bind and release `address` once, so a listener that a supervised channel binds later
    (SMTP, admin) fails the start with one line rather than a restart loop. EADDRINUSE is
    retried for `retry` seconds: a previous daemon's SMTP worker may hold it for a moment."""
    deadline = time.monotonic() + retry
    while True:
        try:
            listen_socket(address, setting=setting, backlog=1).close()
            return
        except ListenError as exc:
            cause = exc.__cause__
            if (
                not isinstance(cause, OSError)
                or cause.errno != errno.EADDRINUSE
                or time.monotonic() > deadline
            ):
                raise
            time.sleep(0.1)


def open_listeners(cfg: Any, *, http: bool, others: bool) -> socket.socket | None:
    """The HTTP listener, bound (`http`), after checking that SMTP's and admin's addresses are
    free (`others`): they bind inside their supervised channels, and a port taken at start-up is
    an operator's mistake to report in one line, not a crash to retry forever."""
    sock = (
        listen_socket(cfg.http.listen, reuse_port=cfg.http.workers > 1, setting="http.listen")
        if http
        else None
    )
    try:
        if others and cfg.smtp.enabled:
            probe_listen("smtp.listen", cfg.smtp.listen, retry=5.0)
        if others and cfg.admin.enabled and (cfg.admin.token or cfg.admin.is_loopback):
            probe_listen("admin.listen", cfg.admin.listen)
    except ListenError:
        if sock is not None:
            sock.close()
        raise
    return sock

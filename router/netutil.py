"""Listening sockets, made by us so several worker processes can share one port."""

from __future__ import annotations

import resource
import socket

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


def listen_socket(address: str, *, reuse_port: bool = False, backlog: int = 1024) -> socket.socket:
    host, port = parse_listen(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock

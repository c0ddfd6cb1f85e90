"""Listening sockets, made by us so several worker processes can share one port."""

from __future__ import annotations

import socket

from config.units import parse_listen


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

"""The SMTP peers, each driven by Postfix's `smtp-source` with the same count, size and concurrency:
the router (every message parsed and journaled with fsync before its 250), a bare aiosmtpd
server with a no-op handler, and Postfix's `smtp-sink` (C, one process, nothing stored)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from tests.bench.peers.procs import Service, spawn, terminate
from tests.bench.peers.tools import Context, ensure_command
from tests.bench.smtp import ROUTER_CONFIG, SINK, journaled, wait_port
from tests.daemon import RouterProcess, free_port


def start_router(ctx: Context) -> Service:
    folder = ctx.work / "router-smtp"
    folder.mkdir()
    router = RouterProcess(folder, ROUTER_CONFIG)
    started = time.perf_counter()
    router.start()
    assert router.proc is not None

    def stop() -> None:
        router.stop()

    service = Service("router", router.proc.pid, f"127.0.0.1:{router.smtp_port}", 0.0, stop)
    try:
        wait_port(router.smtp_port)
        service.startup_s = time.perf_counter() - started
    except BaseException:
        service.stop()
        raise
    service.count_stored = lambda: journaled(router)
    return service


def start_aiosmtpd(ctx: Context) -> Service:
    port = free_port()
    log = ctx.work / "aiosmtpd.log"
    started = time.perf_counter()
    proc = spawn([sys.executable, "-c", SINK, str(port)], log)
    service = Service("aiosmtpd", proc.pid, f"127.0.0.1:{port}", 0.0, lambda: terminate(proc))
    try:
        wait_port(port)
        service.startup_s = time.perf_counter() - started
    except BaseException:
        service.stop()
        raise
    return service


def start_smtp_sink(ctx: Context) -> Service:
    binary = ensure_command(ctx, "smtp-sink", "postfix")
    port = free_port()
    log = ctx.work / "smtp-sink.log"
    started = time.perf_counter()
    # As root smtp-sink insists on dropping its privileges (-u); 256: the listen backlog.
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = spawn([binary, *user, f"127.0.0.1:{port}", "256"], log)
    service = Service("smtp-sink", proc.pid, f"127.0.0.1:{port}", 0.0, lambda: terminate(proc))
    try:
        wait_port(port)
        service.startup_s = time.perf_counter() - started
    except BaseException:
        service.stop()
        raise
    return service


SMTP_PEERS: dict[str, tuple[str, Callable[[Context], Service]]] = {
    "router": ("router: parsed + journaled (fsync) before 250", start_router),
    "aiosmtpd": ("aiosmtpd, no-op handler (the library's floor)", start_aiosmtpd),
    "smtp-sink": ("Postfix smtp-sink (C, stores nothing)", start_smtp_sink),
}

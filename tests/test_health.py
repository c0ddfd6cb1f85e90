"""Issue 14, must-show 6: admin /readyz answers 503 naming the cause while the data dir is read-only
or a runner is dead, and 200 after recovery; /healthz is liveness only."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.version import version
from tests.daemon import RouterProcess, descendants
from tests.test_lifecycle import JOURNALING
from tests.tools import need_tool

BODY = """
[endpoints.hello]
return_type = "data"
return_data = "hi"
"""


def readyz(router: RouterProcess) -> tuple[int, dict[str, Any]]:
    r = httpx.get(f"http://127.0.0.1:{router.admin_port}/readyz", timeout=10)  # public, like /healthz
    return r.status_code, r.json()


def wait_readyz(router: RouterProcess, status: int, timeout: float = 30.0) -> dict[str, Any]:
    def answered() -> dict[str, Any] | None:
        code, body = readyz(router)
        return body if code == status else None

    return router.wait_for(answered, timeout=timeout, interval=0.05)  # type: ignore[no-any-return]


def children(router: RouterProcess) -> dict[str, int]:
    """role (`runner=1`) -> pid of the daemon's runner processes: forked by its fork server
    (named `router-run-N`) or, without one, started as `serve --runner N`."""
    assert router.proc is not None
    roles = {}
    for pid in descendants(router.proc.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except FileNotFoundError:
            continue
        if comm.startswith("router-run-"):
            roles[f"runner={comm.removeprefix('router-run-')}"] = pid
        elif b"--runner" in argv:
            roles[f"runner={argv[argv.index(b'--runner') + 1].decode()}"] = pid
    return roles


def test_ready_names_every_part_and_healthz_is_liveness(router_factory) -> None:  # type: ignore[no-untyped-def]
    router: RouterProcess = router_factory(BODY, router_extra="runners = 1")
    body = wait_readyz(router, 200)
    assert body["status"] == "ready" and body["problems"] == []
    assert {
        "journal",
        "channel:http",
        "channel:smtp",
        "channel:admin",
        "channel:schedules",
        "runner=1",
    } <= set(body["checks"]), body
    assert set(body["checks"].values()) == {"ok"}
    live = httpx.get(f"http://127.0.0.1:{router.admin_port}/healthz").json()
    assert live["status"] == "ok" and live["version"] == version()


def test_readyz_503_while_the_data_dir_is_read_only_then_200(router_factory) -> None:  # type: ignore[no-untyped-def]
    chattr = need_tool("chattr", "e2fsprogs")
    router: RouterProcess = router_factory(BODY, router_extra="runners = 0")
    wait_readyz(router, 200)
    # The directory, the database and its WAL immutable (even for root: every commit fails with
    # EPERM), but not the -shm file: SQLite maps it into memory, and a write to a mapping of an
    # immutable file is a SIGBUS that kills every process of the daemon, not an error it can report.
    frozen = [router.data_dir, router.data_dir / "router.db", router.data_dir / "router.db-wal"]
    probe = subprocess.run([chattr, "+i", *map(str, frozen)], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {probe.stderr.strip()}")
    try:
        body = wait_readyz(router, 503)
        assert body["status"] == "not ready"
        assert body["checks"]["journal"].startswith("cannot write"), body
        assert [p for p in body["problems"] if p.startswith("journal: cannot write")], body
        assert body["checks"]["channel:http"] == "ok"  # the listener is fine: the journal is named
    finally:
        subprocess.run([chattr, "-i", *map(str, frozen)], capture_output=True)
    body = wait_readyz(router, 200)
    assert body["checks"]["journal"] == "ok"


def test_readyz_503_while_a_runner_is_dead_then_200(router_factory) -> None:  # type: ignore[no-untyped-def]
    router: RouterProcess = router_factory(BODY, router_extra="runners = 1")
    wait_readyz(router, 200)
    pid = router.wait_for(lambda: children(router).get("runner=1"))
    os.kill(pid, signal.SIGKILL)
    body = wait_readyz(router, 503)
    assert body["checks"]["runner=1"] != "ok" and any(p.startswith("runner=1: ") for p in body["problems"]), (
        body
    )
    assert body["checks"]["journal"] == "ok"
    body = wait_readyz(router, 200)  # the pool restarts it; ready once it takes work again
    assert body["checks"]["runner=1"] == "ok"
    assert children(router)["runner=1"] != pid


def runner_doorbells() -> set[str]:
    """The abstract socket names of every router runner's doorbell on this machine."""
    lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    return {line.split()[-1] for line in lines if line.split()[-1].startswith("@router-")}


def test_two_daemons_on_one_data_dir_each_ring_their_own_runners(router_factory) -> None:  # type: ignore[no-untyped-def]
    before = runner_doorbells()
    first: RouterProcess = router_factory(JOURNALING, router_extra="runners = 1")
    second: RouterProcess = router_factory(JOURNALING, start=False, router_extra="runners = 1")
    second.data_dir = first.data_dir  # a standby beside the active daemon (SPEC §10)
    second.write_config(JOURNALING)
    second.start()
    for router in (first, second):
        assert wait_readyz(router, 200)["checks"]["runner=1"] == "ok"
    assert len(runner_doorbells() - before) == 2  # one doorbell each: neither waits for the other's name
    for n, router in enumerate((first, second)):
        url = router.url("webhooks.ingest")
        assert httpx.post(url, json={"n": n}, timeout=10).status_code == 200

    def both_done():  # type: ignore[no-untyped-def]
        sigs = second.signals("--source", "webhooks.ingest")
        return sigs if len(sigs) == 2 and all(s["status"] == "done" for s in sigs) else None

    assert sorted(s["entity"]["n"] for s in second.wait_for(both_done)) == [0, 1]
    assert "doorbell busy" not in first.log() + second.log()
    # The first's runner dies: the second's readiness is its own runner's, still up.
    os.kill(first.wait_for(lambda: children(first).get("runner=1")), signal.SIGKILL)
    assert wait_readyz(first, 503)["checks"]["runner=1"] != "ok"
    assert readyz(second)[0] == 200

"""The fork server's children as the main process sees them (router/ops/forkserver.py)."""

from __future__ import annotations

import time
from typing import Any

import trio

from router.ops.forkserver import ForkedProcess, ForkServer


def _sleeper(request: dict[str, Any], fds: list[int]) -> int:
    time.sleep(60)  # until it is killed
    return 0


def test_a_child_killed_after_the_reports_stopped_is_waited_for_at_once() -> None:
    """At the daemon's shutdown the root nursery cancels the task reading the server's reports
    while channels still wait for their children (the SMTP worker): `wait` must not then sit out
    its wait for a report that cannot come (it took 1 s of every daemon stop)."""
    server = ForkServer.start({"sleeper": _sleeper})

    async def main() -> tuple[float, int]:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            child: ForkedProcess = await server.spawn("sleeper", name="test-sleeper")
            nursery.cancel_scope.cancel()  # the reader goes first, as in the daemon
        child.kill()
        started = trio.current_time()
        code = await child.wait()
        return trio.current_time() - started, code

    try:
        elapsed, code = trio.run(main)
    finally:
        server.close()
    assert code == -1  # the exit is all it could learn: nobody read the server's report
    assert elapsed < 0.9, f"wait took {elapsed:.2f}s"

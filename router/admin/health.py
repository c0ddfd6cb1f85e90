"""`/healthz` (liveness: the event loop answers) and `/readyz` (readiness: the daemon can take
and keep signals now) on the admin listener.

Ready means all of: the journal takes a write (a real commit through the group-commit writer,
so a read-only or full data dir shows at once, not at the next signal), every supervised
channel is serving (HTTP, SMTP, admin, schedules, retention: a crashed one is down until its
restart has started), and every child process the daemon keeps (HTTP workers, runners) is
alive and, for runners, listening for work. Anything else answers 503 with what is wrong.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from router.admin.core import AdminHost
from router.dispatch.doorbell import runner_listening

PROBE_TIMEOUT = 2.0  # a journal that cannot commit a tiny row in 2 s is not taking signals either


def _touch(tx: Any) -> None:
    tx.health_touch("readyz")  # one row, rewritten: proves a commit reaches the disk


PROBE_EVERY = 1.0  # /readyz is public: a flood of probes costs at most one commit a second


class Readiness:
    def __init__(self, daemon: AdminHost) -> None:
        self.daemon = daemon
        self._probed_at = -PROBE_EVERY
        self._journal_problem: str | None = None

    async def journal(self) -> str | None:
        if time.monotonic() - self._probed_at < PROBE_EVERY:
            return self._journal_problem
        problem: str | None = f"no commit within {PROBE_TIMEOUT:g}s"
        with trio.move_on_after(PROBE_TIMEOUT):
            try:
                await self.daemon.storage.write(_touch)
                problem = None
            except Exception as exc:  # noqa: BLE001 - any failure to commit is the answer
                problem = f"cannot write: {exc}"
        self._probed_at, self._journal_problem = time.monotonic(), problem
        return problem

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body): `checks` names every part with "ok" or what is wrong; `problems`
        lists the wrong ones as `part: reason`."""
        daemon = self.daemon
        checks: dict[str, str | None] = {}
        if not daemon.ready:
            checks["daemon"] = "starting or stopping"
        checks["journal"] = await self.journal()
        for name, up in sorted(daemon.channels_up.items()):
            checks[f"channel:{name}"] = None if up else "not serving (crashed, restarting)"
        checks.update(_children(daemon))
        problems = [f"{part}: {why}" for part, why in checks.items() if why is not None]
        body = {
            "status": "not ready" if problems else "ready",
            "checks": {part: why or "ok" for part, why in checks.items()},
            "problems": problems,
        }
        return not problems, body


def _children(daemon: AdminHost) -> dict[str, str | None]:
    pool = daemon.workers
    if pool is None:
        return {}
    checks: dict[str, str | None] = {}
    for flag, index in pool.roles:
        role = f"{flag.lstrip('-')}={index}"
        proc = pool.processes.get((flag, index))
        if proc is None or proc.returncode is not None:
            checks[role] = "not running (restarting)"
        elif flag == "--runner" and not runner_listening(daemon.doorbells, index):
            checks[role] = f"pid {proc.pid} is not taking work yet (starting)"
        else:
            checks[role] = None
    return checks

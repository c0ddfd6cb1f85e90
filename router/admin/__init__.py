"""Admin API, dashboard and metrics on `[admin] listen` (see `server.run_admin`)."""

from __future__ import annotations

from typing import Any

import trio


async def run_admin(daemon: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    from router.admin.server import run_admin as _run

    await _run(daemon, task_status=task_status)


__all__ = ["run_admin"]

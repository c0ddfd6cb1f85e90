"""Admin API, dashboard and metrics on `[admin] listen` (see `server.run_admin`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from router.admin.core import AdminHost


async def run_admin(daemon: AdminHost, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    from router.admin.server import run_admin as _run

    await _run(daemon, task_status=task_status)


__all__ = ["run_admin"]

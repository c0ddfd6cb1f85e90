"""Channel supervision: crashes are logged and the channel restarts with backoff."""

from __future__ import annotations

from typing import Any

import trio

from router.ops.supervise import supervise


async def test_channel_failing_before_it_listens_is_retried_and_then_reports_started(
    autojump_clock: Any,
) -> None:
    attempts = 0

    async def flaky(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise OSError("address in use")
        task_status.started()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(supervise, "flaky", flaky)
        assert attempts == 3
        nursery.cancel_scope.cancel()


async def test_channel_crashing_after_start_is_restarted(autojump_clock: Any) -> None:
    runs = 0

    async def crashes(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        await trio.sleep(1)
        if runs < 4:
            raise RuntimeError("boom")
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(supervise, "crashy", crashes)
        await trio.sleep(30)
        assert runs == 4  # restarted three times, then stayed up
        nursery.cancel_scope.cancel()

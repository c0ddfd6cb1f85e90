"""LISTEN for wake-ups, waited on from trio without a thread (SCALE-OUT §4, §5.6).

The node's main process holds one autocommit connection that LISTENs; trio waits until its socket
is readable, then drains the notifications libpq has read. Every writer sends one NOTIFY after a
committed batch that made work runnable, so a node's runners hear of work another node journaled.
A notification is a hint: claim loops keep polling, so a transaction-mode pooler (which drops
LISTEN silently) makes wake-ups slower, never lost. After a (re)connect `wake` is called at once,
because notifications sent while nobody listened are gone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import psycopg
import structlog
import trio

from router.storage.base import StorageUnavailable

log = structlog.get_logger("router.storage.postgres")


async def listen(connect: Callable[[], Any], channel: str, wake: Callable[[], None]) -> None:
    backoff = 0.5
    while True:
        try:
            conn = await trio.to_thread.run_sync(connect)
        except StorageUnavailable as exc:
            log.warning("listen unavailable", error=str(exc), retry_in=backoff)
            await trio.sleep(backoff * random.uniform(0.8, 1.2))  # jittered: N nodes do not reconnect in step
            backoff = min(backoff * 2, 10.0)
            continue
        try:
            conn.execute(f"LISTEN {channel}")
            backoff = 0.5
            wake()
            while True:
                await trio.lowlevel.wait_readable(conn.fileno())
                conn.pgconn.consume_input()
                if conn.pgconn.status != psycopg.pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the LISTEN connection closed")
                heard = False
                while conn.pgconn.notifies() is not None:
                    heard = True
                if heard:
                    # A little jitter: every node hears the same NOTIFY; their claims should not
                    # all hit the head of the claims table in the same millisecond.
                    await trio.sleep(random.uniform(0, 0.003))
                    wake()
        except (psycopg.Error, OSError) as exc:
            log.warning("listen connection lost", error=str(exc).strip())
        finally:
            conn.close()
        await trio.sleep(backoff)

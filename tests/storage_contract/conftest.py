from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from router.storage import Storage
from tests.storage_contract import workers
from tests.storage_contract.backends import NAMES, location, open_backend


@dataclass
class Backend:
    name: str
    where: str

    def open(self) -> Storage:
        return open_backend(self.name, self.where)


@pytest.fixture(params=NAMES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    pg = request.getfixturevalue("pg_database") if request.param == "postgres" else None
    return Backend(request.param, location(request.param, tmp_path, pg))


@pytest.fixture
def store(backend: Backend) -> Iterator[Storage]:
    storage = backend.open()
    yield storage
    storage.close()


def run_processes(
    target: Callable[..., None], argsets: list[tuple[Any, ...]], tmp: Path, timeout: float = 120
) -> list[Any]:
    """Run `target(*args, out, go)` in one spawned process per argset, released together; their JSON.

    `go` is set only once every process has imported and reached its target: a spawned
    interpreter takes a second or more to start on a loaded machine, long enough for the first
    to finish the work alone, and then nothing raced."""
    ctx = multiprocessing.get_context("spawn")
    arrived = ctx.Barrier(len(argsets) + 1)
    go = ctx.Event()
    outs = [tmp / f"proc{i}.json" for i in range(len(argsets))]
    procs = [
        ctx.Process(target=workers.arrive_then, args=(arrived, target, *args, str(out), go))
        for args, out in zip(argsets, outs, strict=True)
    ]
    for p in procs:
        p.start()
    try:
        arrived.wait(timeout)
    except threading.BrokenBarrierError:
        for p in procs:
            p.kill()
        raise AssertionError(f"{target.__name__}: a process never started") from None
    go.set()
    for p in procs:
        p.join(timeout)
        assert p.exitcode == 0, f"{target.__name__} process exited with {p.exitcode}"
    return [json.loads(out.read_text()) for out in outs]

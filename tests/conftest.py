from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon import RouterProcess


@pytest.fixture
def router_factory(tmp_path: Path) -> Iterator[Callable[..., RouterProcess]]:
    started: list[RouterProcess] = []

    def make(body: str, *, start: bool = True, **kwargs) -> RouterProcess:  # type: ignore[no-untyped-def]
        sub = tmp_path / f"r{len(started)}"
        sub.mkdir()
        proc = RouterProcess(sub, body, **kwargs)
        started.append(proc)
        if start:
            proc.start()
        return proc

    yield make
    for proc in started:
        proc.stop(timeout=10)

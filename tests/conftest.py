"""The one way tests start the real daemon: `router_factory` (per test) or
`module_router_factory` (one daemon shared by a module's tests). Either stops every daemon it
started when its scope ends, whatever the tests did."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import RouterFactory


@pytest.fixture
def router_factory(tmp_path: Path) -> Iterator[RouterFactory]:
    factory = RouterFactory(lambda: tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def module_router_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RouterFactory]:
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    factory = RouterFactory(lambda: root)
    yield factory
    factory.stop_all()

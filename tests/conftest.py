from __future__ import annotations

import os
import subprocess
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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The DSN of a PostgreSQL server with a migrated template database (tests/pg.py)."""
    from tests import pg

    def unavailable(reason: str) -> None:
        if pg.required():
            pytest.fail(f"ROUTER_REQUIRE_PG=1 but {reason}", pytrace=False)
        pytest.skip(reason)

    dsn = os.environ.get("ROUTER_TEST_PG_DSN")
    cluster: pg.Cluster | None = None
    if not dsn:
        bindir = pg.pg_bin()
        if bindir is None:
            unavailable("no PostgreSQL server: set ROUTER_TEST_PG_DSN or apt-get install postgresql")
        assert bindir is not None
        cluster = pg.Cluster(bindir)
        try:
            cluster.start()
        except (OSError, subprocess.SubprocessError) as exc:
            cluster.stop()
            detail = getattr(exc, "stderr", "") or exc
            unavailable(f"could not start a PostgreSQL cluster: {detail}")
        dsn = cluster.dsn
    try:
        pg.prepare_template(dsn)
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is reported the same way
        if cluster is not None:
            cluster.stop()
        unavailable(f"PostgreSQL at {dsn!r} is not usable: {exc}")
    yield dsn
    if cluster is not None:
        cluster.stop()


@pytest.fixture
def pg_database(pg_server: str) -> Iterator[str]:
    """A fresh database (this router's schema, no rows) for one test; dropped afterwards."""
    from tests import pg

    dsn = pg.create_database(pg_server)
    yield dsn
    pg.drop_database(pg_server, dsn)

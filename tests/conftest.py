from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon import RouterProcess


@pytest.fixture(params=["sqlite", "postgres"])
def any_backend(request: pytest.FixtureRequest) -> str | None:
    """Run the test once per storage backend: None (SQLite in the data dir) or a PostgreSQL URL
    of a fresh database. `router_factory` daemons of a test that uses it get `[database] url`;
    parametrise a module with `pytestmark = pytest.mark.usefixtures("any_backend")`."""
    if request.param == "sqlite":
        return None
    from tests import pg

    return pg.url(request.getfixturevalue("pg_database"))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_backend(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """`any_backend` for a module-scoped daemon: None (SQLite) or the URL of a database kept for the module."""
    if request.param == "sqlite":
        yield None
        return
    from tests import pg

    server = request.getfixturevalue("pg_server")
    dsn = pg.create_database(server)
    yield pg.url(dsn)
    pg.drop_database(server, dsn)


@pytest.fixture
def router_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., RouterProcess]]:
    started: list[RouterProcess] = []
    database_url = request.getfixturevalue("any_backend") if "any_backend" in request.fixturenames else None

    def make(body: str, *, start: bool = True, **kwargs) -> RouterProcess:  # type: ignore[no-untyped-def]
        if database_url and "database_url" not in kwargs:
            kwargs["database_url"] = database_url
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
        pg._cluster = cluster
    try:
        pg.prepare_template(dsn)
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is reported the same way
        if cluster is not None:
            cluster.stop()
        unavailable(f"PostgreSQL at {dsn!r} is not usable: {exc}")
    yield dsn
    if cluster is not None:
        pg._cluster = None
        cluster.stop()


@pytest.fixture
def pg_database(pg_server: str) -> Iterator[str]:
    """A fresh database (this router's schema, no rows) for one test; dropped afterwards."""
    from tests import pg

    dsn = pg.create_database(pg_server)
    yield dsn
    pg.drop_database(pg_server, dsn)

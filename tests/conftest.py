"""The one way tests start the real daemon: `router_factory` (per test) or
`module_router_factory` (one daemon shared by a module's tests). Either stops every daemon it
started when its scope ends, whatever the tests did."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import RouterFactory


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
def router_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RouterFactory]:
    """Daemons for one test; with `any_backend` among the test's fixtures, on that backend."""
    url = request.getfixturevalue("any_backend") if "any_backend" in request.fixturenames else None
    factory = RouterFactory(lambda: tmp_path, database_url=url)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def module_router_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RouterFactory]:
    """Daemons shared by a module's tests (a module on both backends passes `database_url=`
    from `module_backend` itself: this factory outlives one backend's daemons)."""
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    factory = RouterFactory(lambda: root)
    yield factory
    factory.stop_all()


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

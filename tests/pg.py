"""A PostgreSQL server for the tests, and one fresh database per test from a migrated template.

Where the server comes from, in order:
  * `ROUTER_TEST_PG_DSN` (CI starts a throwaway cluster in .ci/run and exports it);
  * a throwaway cluster this module starts itself, when Debian's server binaries are installed
    (`/usr/lib/postgresql/*/bin`): as the `postgres` user when the tests run as root, because
    `initdb` refuses root; stopped and deleted at the end of the session;
  * none: PostgreSQL tests skip with the reason, or FAIL when `ROUTER_REQUIRE_PG=1` (CI), so a
    suite that silently skipped its PostgreSQL half can never look green.

The cluster's directory is made with mkdtemp under /tmp, not pytest's tmp_path: /tmp/pytest-of-root
is mode 0700, which the postgres user cannot enter, and a Unix socket path must stay under 107 bytes.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

TEMPLATE = "router_tmpl"  # migrated once per session; CREATE DATABASE ... TEMPLATE copies it in ms
_counter = itertools.count()
_lock = threading.Lock()


def required() -> bool:
    return os.environ.get("ROUTER_REQUIRE_PG") == "1"


def pg_bin() -> Path | None:
    dirs = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(p) for p in d.split("/")[4].split(".")]
    )
    return Path(dirs[-1]) if dirs and Path(dirs[-1], "initdb").exists() else None


class Cluster:
    """A throwaway cluster on a Unix socket only (no TCP port to fight over)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="rpg."))
        self.data = self.dir / "data"
        self.user = None if os.geteuid() != 0 else "postgres"
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, user=self.user, check=check, capture_output=True, text=True, timeout=120)

    @property
    def dsn(self) -> str:
        return f"host={self.dir} user=postgres dbname=postgres"

    def start(self, *, fsync: bool = False) -> None:
        """fsync off for tests (a kill -9 of router or PostgreSQL needs none; only an OS crash would);
        on for benchmarks."""
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-instructions",
            "-E",
            "UTF8",
        )
        self.pg_ctl(
            "start",
            "-o",
            f"-k {self.dir} -c listen_addresses='' -c fsync={'on' if fsync else 'off'}"
            " -c max_connections=300",
        )

    def pg_ctl(self, verb: str, *extra: str) -> None:
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", *extra, verb
        )

    def stop(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False
        )
        shutil.rmtree(self.dir, ignore_errors=True)


_cluster: Cluster | None = None  # the session's own cluster, when this module started one


def restart(mode: str = "immediate") -> None:
    """`pg_ctl restart -m immediate` of the test server (a crash and recovery, as far as clients see),
    whether this module started it or CI did (ROUTER_TEST_PG_DATA / ROUTER_TEST_PG_BIN)."""
    if _cluster is not None:
        _cluster.pg_ctl("restart", "-m", mode)
        return
    data, bindir = os.environ.get("ROUTER_TEST_PG_DATA"), os.environ.get("ROUTER_TEST_PG_BIN")
    if not (data and bindir):
        raise RuntimeError(
            "no control over the PostgreSQL server (set ROUTER_TEST_PG_DATA and ROUTER_TEST_PG_BIN)"
        )
    user = "postgres" if os.geteuid() == 0 else None
    subprocess.run(
        [f"{bindir}/pg_ctl", "-D", data, "-l", f"{Path(data).parent}/log", "-w", "-m", mode, "restart"],
        user=user,
        check=True,
        capture_output=True,
        timeout=120,
    )


def can_restart() -> bool:
    return _cluster is not None or bool(
        os.environ.get("ROUTER_TEST_PG_DATA") and os.environ.get("ROUTER_TEST_PG_BIN")
    )


def dsn_with(dsn: str, **params: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, **params)


def url(dsn: str) -> str:
    """The `postgresql://` URL form of a libpq keyword DSN ([database] url takes URLs only)."""
    from urllib.parse import quote, urlencode

    from psycopg.conninfo import conninfo_to_dict

    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    user, db = params.pop("user", ""), params.pop("dbname", "")
    return f"postgresql://{quote(user)}@/{quote(db)}" + (f"?{urlencode(params)}" if params else "")


def create_database(server_dsn: str, template: str | None = TEMPLATE) -> str:
    """A new, empty-of-data database (schema migrated, from the template); its DSN."""
    import psycopg

    with _lock:
        name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        tmpl = f" TEMPLATE {template}" if template else " TEMPLATE template0"
        conn.execute(f"CREATE DATABASE {name}{tmpl}")
    return dsn_with(server_dsn, dbname=name)


def drop_database(server_dsn: str, dsn: str) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def prepare_template(server_dsn: str) -> None:
    """The session's template: a database migrated to this router's schema."""
    import psycopg

    from router.storage.postgres.schema import migrate

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE} TEMPLATE template0")
    with psycopg.connect(dsn_with(server_dsn, dbname=TEMPLATE), autocommit=True) as conn:
        migrate(conn)

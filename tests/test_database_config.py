"""`[database]`: a PostgreSQL URL selects PostgreSQL, `router check` validates it without connecting,
and `router serve` against a database it cannot reach exits 69 with one line, no traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import ConfigError, parse_config
from tests.daemon import RouterProcess, free_port


def test_the_url_form_is_checked_without_connecting() -> None:
    cfg = parse_config({"database": {"url": "postgresql://router:secret@db.example:5432/router"}})
    assert cfg.database.is_postgres and cfg.database.pool_size == 4
    assert (cfg.database.statement_timeout, cfg.database.connect_timeout) == (30.0, 5.0)
    assert not parse_config({}).database.is_postgres  # without it: SQLite in data_dir, as before
    for bad, says in (
        ("mysql://x@y/z", "PostgreSQL URL"),
        ("postgresql://x@y:99999/z", "port"),
        ("host=/tmp dbname=x", "PostgreSQL URL"),
    ):
        with pytest.raises(ConfigError) as err:
            parse_config({"database": {"url": bad}})
        assert "database.url" in str(err.value) and says.lower() in str(err.value).lower(), str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"database": {"url": "postgresql:///r", "pool_size": 0, "connect_timeout": "soon"}})
    assert "database.pool_size" in str(err.value) and "database.connect_timeout" in str(err.value)


def test_check_accepts_an_env_password_and_refuses_a_bad_url(tmp_path: Path) -> None:
    cfg = tmp_path / "router.toml"
    cfg.write_text('[database]\nurl = "postgresql://router:${PGPASS_TEST}@127.0.0.1:1/router"\n')
    run = [sys.executable, "-m", "router.cli", "check", "-c", str(cfg)]
    ok = subprocess.run(
        run,
        capture_output=True,
        text=True,
        env={"PGPASS_TEST": "s3cret", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr  # nothing listens on port 1: check never connected
    cfg.write_text('[database]\nurl = "mysql://router@127.0.0.1/router"\n')
    bad = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 78 and "database.url" in bad.stderr


def test_serve_with_an_unreachable_database_exits_69_with_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    proc = RouterProcess(tmp_path, "", database_url=f"postgresql://router@127.0.0.1:{port}/router")
    started = time.monotonic()
    proc.start(wait=False)
    assert proc.proc is not None
    assert proc.proc.wait(60) == 69
    assert time.monotonic() - started < 30
    lines = [line for line in proc.log().splitlines() if "level=error" in line]
    assert len(lines) == 1 and "storage unavailable" in lines[0] and "database" in lines[0], proc.log()
    assert "Traceback" not in proc.log()

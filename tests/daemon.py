"""Start the real daemon as a subprocess on free loopback ports, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BASE = """
[router]
data_dir = "{data_dir}"
public_url = "http://127.0.0.1:{http_port}"
lease = "3s"
shutdown_timeout = "{shutdown_timeout}"
retry_backoff = "{retry_backoff}"
{router_extra}
[http]
listen = "127.0.0.1:{http_port}"
workers = {workers}
{http_extra}

[smtp]
listen = "127.0.0.1:{smtp_port}"

[admin]
listen = "127.0.0.1:{admin_port}"
token = "test-admin-token"
{admin_extra}
"""


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the fork server's children are the daemon's grandchildren)."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        out = subprocess.run(
            ["pgrep", "-P", ",".join(map(str, frontier))], capture_output=True, text=True
        ).stdout
        frontier = [int(x) for x in out.split()]
        found += frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


class RouterProcess:
    def __init__(
        self,
        tmp: Path,
        body: str,
        *,
        shutdown_timeout: str = "10s",
        retry_backoff: str = "0.2s",
        env: dict[str, str] | None = None,
        workers: int = 1,
        router_extra: str = "",
        http_extra: str = "",
        database_url: str | None = None,
        admin_extra: str = "",
    ) -> None:
        self.tmp = tmp
        self.database_url = database_url  # [database] url: PostgreSQL instead of SQLite in data_dir
        self.workers = workers
        self.router_extra = textwrap.dedent(router_extra)  # more `key = value` lines for [router]
        self.http_extra = textwrap.dedent(http_extra)  # and for [http]
        self.admin_extra = textwrap.dedent(admin_extra)  # and for [admin]
        self.http_port = free_port()
        self.smtp_port = free_port()
        self.admin_port = free_port()
        self.data_dir = tmp / "var"
        self.config_path = tmp / "router.toml"
        self.write_config(body, shutdown_timeout=shutdown_timeout, retry_backoff=retry_backoff)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / "router.log"
        self._store: Any = None  # the test's own connection to a PostgreSQL store (read())

    def write_config(self, body: str, *, shutdown_timeout: str = "10s", retry_backoff: str = "0.2s") -> None:
        head = BASE.format(
            data_dir=self.data_dir,
            http_port=self.http_port,
            smtp_port=self.smtp_port,
            admin_port=self.admin_port,
            shutdown_timeout=shutdown_timeout,
            retry_backoff=retry_backoff,
            workers=self.workers,
            router_extra=self.router_extra,
            http_extra=self.http_extra,
            admin_extra=self.admin_extra,
        )
        if self.database_url:
            head += f"\n[database]\nurl = {json.dumps(self.database_url)}\n"
        self.config_path.write_text(head + textwrap.dedent(body))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, wait: bool = True) -> RouterProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "router.cli", "serve", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"router not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "router.cli", *args[:1], "-c", str(self.config_path), *args[1:]],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"router {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def sources(self) -> dict[str, dict[str, Any]]:
        items = json.loads(self.cli("endpoints", "--json").stdout)
        return {f"{i['kind']}.{i['name']}": i for i in items}

    def url(self, source: str) -> str:
        return str(self.sources()[source]["url"])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the daemon; its children (runners, workers, SMTP) die with it: wait for that too."""
        if self.proc and self.proc.poll() is None:
            kids = descendants(self.proc.pid)
            self.proc.kill()
            self.proc.wait(10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(_alive(int(k)) for k in kids):
                time.sleep(0.01)

    def stop(self, timeout: float = 20.0) -> int:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)

    def read(self, fn: Any, default: Any = None) -> Any:
        """`fn(tx)` on the daemon's store, wherever the config puts it (SQLite in the data dir, or
        `[database] url`), through the storage interface; `default` before the store exists."""
        from router.storage import open_postgres, open_storage

        if self.database_url:
            if self._store is None:
                self._store = open_postgres(self.database_url, pool_size=1)
            return self._store.read(fn)
        path = self.data_dir / "router.db"
        if not path.exists():
            return default
        store = open_storage(path)
        try:
            return store.read(fn)
        finally:
            store.close()

    def status(self) -> dict[str, Any]:
        """The admin API's `/api/status` (signals by status, runs active, HTTP requests in flight)."""
        r = httpx.get(
            f"http://127.0.0.1:{self.admin_port}/api/status",
            timeout=10,
            headers={"Authorization": "Bearer test-admin-token"},
        )
        r.raise_for_status()
        return dict(r.json())

    def signals(self, *extra: str) -> list[dict[str, Any]]:
        return json.loads(self.cli("signals", "--json", "--limit", "100000", *extra).stdout)

    def wait_for(self, predicate, timeout: float = 20.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(
            f"condition not met within {timeout}s (last: {last!r})\n--- log ---\n{self.log()[-4000:]}"
        )


class RouterFactory:
    """`make(body, start=True, **RouterProcess options)`: a daemon in a fresh folder under `root`."""

    def __init__(self, root: Callable[[], Path], database_url: str | None = None) -> None:
        self._root = root
        self.database_url = database_url  # every daemon on this PostgreSQL database (None: SQLite)
        self.started: list[RouterProcess] = []

    def __call__(self, body: str, *, start: bool = True, **kwargs: Any) -> RouterProcess:
        if self.database_url and "database_url" not in kwargs:
            kwargs["database_url"] = self.database_url
        sub = self._root() / f"r{len(self.started)}"
        sub.mkdir()
        proc = RouterProcess(sub, body, **kwargs)
        self.started.append(proc)
        if start:
            proc.start()
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop(timeout=10)

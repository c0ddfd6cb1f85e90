"""Issue 7, must-show 3 (first half): play systemd's part over NOTIFY_SOCKET, and the unit file."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon import RouterProcess

BODY = """
[endpoints.hello]
return_type = "data"
return_data = "hi"
"""


class NotifySocket:
    """The AF_UNIX datagram socket systemd would hold for a Type=notify service."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # short: sun_path is 108 bytes
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[tuple[float, str]] = []

    def wait_for(self, state: str, timeout: float = 20.0) -> float:
        """Receive until a datagram carries `state` (e.g. "READY=1"); returns when it arrived."""
        for at, text in self.messages:
            if state in text.split("\n"):
                return at
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            now = time.monotonic()
            self.messages.append((now, data.decode()))
            if state in data.decode().split("\n"):
                return now
        raise AssertionError(f"no {state} within {timeout}s; got {[m for _, m in self.messages]}")

    def states(self) -> list[str]:
        return [line for _, text in self.messages for line in text.split("\n")]

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def test_ready_watchdog_reloading_and_stopping_over_notify_socket(tmp_path: Path, notify: NotifySocket) -> None:
    router = RouterProcess(tmp_path, BODY, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    router.env.pop("WATCHDOG_PID", None)
    try:
        router.start(wait=False)
        notify.wait_for("READY=1")
        # READY means serving: every listener is up by then.
        assert httpx.get(f"{router.base}/readyz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{router.admin_port}/healthz").status_code == 200
        assert "STATUS=serving" in notify.states()

        # Keep-alives every WATCHDOG_USEC / 2, well inside the watchdog timeout of 1 s.
        first = notify.wait_for("WATCHDOG=1")
        until = time.monotonic() + 2.2
        while time.monotonic() < until:  # receive as they come, to time the gaps
            notify.sock.settimeout(max(0.01, until - time.monotonic()))
            try:
                notify.messages.append((time.monotonic(), notify.sock.recv(4096).decode()))
            except TimeoutError:
                break
        beats = [at for at, text in notify.messages if "WATCHDOG=1" in text.split("\n")]
        assert len(beats) >= 4, beats
        gaps = [b - a for a, b in zip(beats, beats[1:], strict=False)]
        assert max(gaps) < 1.0, gaps
        assert beats[0] == first

        # SIGHUP: RELOADING=1 then READY=1 again.
        notify.messages.clear()
        router.signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1", timeout=5)
        notify.wait_for("READY=1", timeout=5)
        states = [s for s in notify.states() if s in ("RELOADING=1", "READY=1")]
        assert states[:2] == ["RELOADING=1", "READY=1"]

        # SIGTERM: STOPPING=1, then a clean exit.
        router.signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", timeout=10)
        assert router.proc is not None and router.proc.wait(15) == 0
    finally:
        router.kill()


def test_no_watchdog_pings_for_another_pid(tmp_path: Path, notify: NotifySocket) -> None:
    """WATCHDOG_PID names the process systemd watches; another process must not ping."""
    router = RouterProcess(tmp_path, BODY, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000",
                                                "WATCHDOG_PID": "1"})
    try:
        router.start(wait=False)
        notify.wait_for("READY=1")
        with pytest.raises(AssertionError):
            notify.wait_for("WATCHDOG=1", timeout=1.0)
    finally:
        router.stop()


@pytest.mark.parametrize("how", ["script", "module"])
def test_systemd_unit_is_hardened_and_valid(tmp_path: Path, how: str) -> None:
    config = tmp_path / "router.toml"
    config.write_text(f'[router]\ndata_dir = "{tmp_path}/var"\n')
    script = Path(sys.executable).parent / "router"
    if how == "script":
        if not script.exists():
            pytest.skip("no `router` console script next to this python")
        cmd = [str(script)]
    else:
        cmd = [sys.executable, "-m", "router.cli"]
    out = subprocess.run([*cmd, "systemd-unit", "-c", str(config)], capture_output=True, text=True, check=True).stdout
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in out.splitlines() if "=" in line}
    assert lines["Type"] == "notify"
    assert lines["WatchdogSec"].rstrip("s").isdigit()
    assert lines["DynamicUser"] == "yes" or "User" in lines
    assert lines["StateDirectory"] == "router"
    assert lines["ProtectSystem"] == "strict"
    assert lines["NoNewPrivileges"] == "yes"
    assert lines["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert "CAP_NET_BIND_SERVICE" in lines["CapabilityBoundingSet"]
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    exec_start = lines["ExecStart"]
    assert exec_start.endswith(f"serve -c {config}")
    assert exec_start.split()[0] == (str(script) if how == "script" else sys.executable)
    assert "AF_UNIX" in lines["RestrictAddressFamilies"]  # sd_notify needs it
    if shutil.which("systemd-analyze"):
        unit = tmp_path / "router.service"
        unit.write_text(out)
        check = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        problems = [line for line in check.stderr.splitlines() if "router.service" in line]
        assert check.returncode == 0 and not problems, check.stderr

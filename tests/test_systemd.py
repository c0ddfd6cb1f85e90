"""Issue 7, must-show 3 (first half): play systemd's part over NOTIFY_SOCKET, and the unit file."""

from __future__ import annotations

import os
import re
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
from tests.tools import need_tool

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


def test_ready_watchdog_reloading_and_stopping_over_notify_socket(
    tmp_path: Path, notify: NotifySocket
) -> None:
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
    router = RouterProcess(
        tmp_path, BODY, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    )
    try:
        router.start(wait=False)
        notify.wait_for("READY=1")
        with pytest.raises(AssertionError):
            notify.wait_for("WATCHDOG=1", timeout=1.0)
    finally:
        router.stop()


def _unit(config: Path, *cmd: str) -> tuple[str, str]:
    out = subprocess.run(
        [*(cmd or (sys.executable, "-m", "router.cli")), "systemd-unit", "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout, out.stderr


def _keys(unit: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    return keys


@pytest.mark.parametrize("how", ["script", "module"])
def test_systemd_unit_is_hardened_and_valid(tmp_path: Path, how: str) -> None:
    config = tmp_path / "etc" / "router.toml"
    config.parent.mkdir()
    config.write_text('[router]\ndata_dir = "/var/lib/router"\n')
    script = Path(sys.executable).parent / "router"
    if how == "script":
        if not script.exists():
            pytest.skip("no `router` console script next to this python")
        cmd = [str(script)]
    else:
        cmd = [sys.executable, "-m", "router.cli"]
    out, _ = _unit(config, *cmd)
    lines = {key: values[-1] for key, values in _keys(out).items()}
    assert lines["Type"] == "notify"
    assert lines["WatchdogSec"].rstrip("s").isdigit()
    assert lines["DynamicUser"] == "yes" or "User" in lines
    assert lines["StateDirectory"] == "router"
    assert lines["ProtectSystem"] == "strict"
    assert lines["NoNewPrivileges"] == "yes"
    assert lines["RestartPreventExitStatus"] == "78"  # EX_CONFIG: a bad config is not retried forever
    assert "AmbientCapabilities" not in lines and lines["CapabilityBoundingSet"] == ""  # no port below 1024
    assert "ReadWritePaths" not in lines  # the data dir is the StateDirectory
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    exec_start = lines["ExecStart"]
    assert exec_start.endswith(f"serve -c {config}")
    assert exec_start.split()[0] == (str(script) if how == "script" else sys.executable)
    assert "AF_UNIX" in lines["RestrictAddressFamilies"]  # sd_notify needs it
    for doc in lines["Documentation"].split():  # each one exists on this machine
        assert doc.startswith(("file://", "man:")), doc
        if doc.startswith("file://"):
            assert Path(doc.removeprefix("file://")).is_file(), doc


def test_capability_only_for_a_port_below_1024_and_sandbox_warnings(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text(
        '[router]\ndata_dir = "/srv/router"\n[smtp]\nlisten = "0.0.0.0:25"\n[admin]\ntoken = "x"\n'
    )
    out, err = _unit(config)
    keys = _keys(out)
    assert keys["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert keys["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert "# Binds a port below 1024: smtp.listen 0.0.0.0:25" in out
    assert keys["ReadWritePaths"] == ["/srv/router"]  # outside StateDirectory
    assert "outside StateDirectory" in err
    # tmp_path is under /tmp: PrivateTmp would hide the config from the service.
    assert f"config {config} is under /tmp" in err

    home = tmp_path / "home.toml"
    home.write_text(
        '[router]\ndata_dir = "/home/alice/router"\n[smtp]\nenabled = false\nlisten = "0.0.0.0:25"\n'
    )
    out, err = _unit(home)
    assert "AmbientCapabilities" not in _keys(out)  # the port below 1024 is on a disabled listener
    assert "data_dir /home/alice/router is under a home directory: ProtectHome=yes hides it" in err


def _analyze(unit_text: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    tool = need_tool("systemd-analyze", "systemd")
    unit = tmp_path / "router.service"
    unit.write_text(unit_text)
    verify = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True)
    security = subprocess.run([tool, "security", "--offline=yes", str(unit)], capture_output=True, text=True)
    match = re.search(
        r"Overall exposure level for router.service: ([0-9.]+)", security.stdout + security.stderr
    )
    assert match, security.stdout + security.stderr
    return verify, float(match.group(1))


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "0.0.0.0:80"])
def test_unit_passes_systemd_analyze_verify_and_scores_at_most_2(tmp_path: Path, listen: str) -> None:
    config = tmp_path / "router.toml"
    config.write_text(
        f'[router]\ndata_dir = "/var/lib/router"\n[http]\nlisten = "{listen}"\n[admin]\ntoken = "x"\n'
    )
    out, _ = _unit(config)
    verify, score = _analyze(out, tmp_path)
    problems = [line for line in verify.stderr.splitlines() if "router.service" in line]
    assert verify.returncode == 0 and not problems, verify.stderr
    assert score <= 2.0, score


def test_install_service_into_a_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "router.cli", "install-service", "--root", str(root)]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    config = root / "etc/router/router.toml"
    unit = root / "etc/systemd/system/router.service"
    assert config.read_text() == (Path(__file__).parent.parent / "router.toml").read_text()
    keys = _keys(unit.read_text())
    assert keys["ExecStart"][0].endswith("serve -c /etc/router/router.toml")  # the path the service sees
    assert "ReadWritePaths" not in keys  # ROUTER_DATA_DIR=/var/lib/router, as the unit sets it
    assert (
        "systemctl daemon-reload" in first.stdout and "systemctl enable --now router.service" in first.stdout
    )
    # No sandbox warnings for the default layout (this machine's python may live under /root).
    assert [w for w in first.stderr.splitlines() if not w.startswith("warning: program ")] == []
    # The installed config is valid as the service reads it.
    check = subprocess.run(
        [sys.executable, "-m", "router.cli", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "ROUTER_DATA_DIR": str(tmp_path / "var")},
    )
    assert check.returncode == 0, check.stderr
    # Run again: both files kept; an edited config is never overwritten.
    config.write_text(config.read_text() + "\n# edited\n")
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0 and "kept" in again.stdout
    assert config.read_text().endswith("# edited\n")
    if shutil.which("systemd-analyze"):
        verify, score = _analyze(unit.read_text(), tmp_path)
        assert verify.returncode == 0 and score <= 2.0

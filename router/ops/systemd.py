"""systemd integration: the sd_notify protocol (READY, WATCHDOG, STOPPING) and a unit file."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Any


def notify(state: str) -> bool:
    """Send one sd_notify datagram; False when not run under systemd (no NOTIFY_SOCKET)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC, in seconds, if systemd asked this process for keep-alives."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


# Hardening: `systemd-analyze security --offline=yes` scores this unit 1.4 ("OK"; 3.7 before
# SystemCallFilter, ProtectClock, ProtectKernelLogs, ProtectHostname, RestrictRealtime,
# ProtectProc and PrivateMounts). Not ProcSubset=pid: it hides /proc/stat, without which
# prometheus-client's process collector reports nothing (it needs the boot time); the score
# is 1.4 either way. MemoryDenyWriteExecute holds for CPython without a JIT. @resources stays
# allowed: the daemon raises its open-files limit (setrlimit). AF_UNIX stays for sd_notify and
# the socketpairs to the SMTP worker and runners.
UNIT = """\
[Unit]
Description=router: signals from HTTP, webhooks, forms, email, SMS and schedules into workflows
Documentation={docs}
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exe} serve -c {config}
ExecReload=/bin/kill -HUP $MAINPID
# Exit 78 (EX_CONFIG) is a bad config: restarting cannot fix it.
Restart=on-failure
RestartPreventExitStatus=78
RestartSec=2s
TimeoutStopSec=30s
WatchdogSec=30s
DynamicUser=yes
StateDirectory=router
WorkingDirectory=/var/lib/router
Environment=ROUTER_DATA_DIR=/var/lib/router
# Secrets for ${{VAR}} in the config (e.g. ROUTER_ADMIN_TOKEN=...), read by systemd as root.
EnvironmentFile=-/etc/router/env
{capabilities}{read_write}NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RemoveIPC=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM
UMask=0077

[Install]
WantedBy=multi-user.target
"""

STATE_DIR = "/var/lib/router"


def docs() -> str:
    """Documentation= for this install: the README beside a checkout, or the package metadata
    (pip installs the README there as the long description), and systemd.exec(5)."""
    from importlib import metadata
    from pathlib import Path

    readme = Path(__file__).resolve().parent.parent / "README.md"
    if readme.is_file():
        return f"file://{readme} man:systemd.exec(5)"
    try:
        files = metadata.distribution("router-daemon").files or []
        meta = next((f for f in files if f.name == "METADATA"), None)
        if meta is not None:
            return f"file://{Path(str(meta.locate())).resolve()} man:systemd.exec(5)"
    except metadata.PackageNotFoundError:
        pass
    return "man:systemd.exec(5)"


@dataclass
class UnitPlan:
    """What the unit must allow, read from the config it will run (`unit_for`)."""

    config: str
    data_dir: str = STATE_DIR
    low_ports: list[str] = field(default_factory=list)  # "http.listen 0.0.0.0:80", ...
    warnings: list[str] = field(default_factory=list)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def plan(config_path: str, cfg: Any, exe: str = "") -> UnitPlan:
    """Capabilities, writable paths and sandbox warnings for `cfg` (a loaded `config.Config`,
    read with the environment the unit gives the service)."""
    config = os.path.abspath(config_path)
    data_dir = os.path.abspath(str(cfg.router.data_dir))
    result = UnitPlan(config=config, data_dir=data_dir)
    listeners = [
        ("http.listen", cfg.http.listen, True),
        ("smtp.listen", cfg.smtp.listen, cfg.smtp.enabled),
        ("admin.listen", cfg.admin.listen, cfg.admin.enabled),
    ]
    for name, address, enabled in listeners:
        port = int(str(address).rsplit(":", 1)[1])
        if enabled and 0 < port < 1024:
            result.low_ports.append(f"{name} {address}")
    checked = [("config", config, "/etc/router"), ("data_dir", data_dir, STATE_DIR)]
    if exe:  # the script and the interpreter it runs (a venv's python is a symlink)
        programs = dict.fromkeys(os.path.realpath(p) for p in (exe.split()[0], sys.executable))
        checked += [("program", p, "/opt or /usr/local (e.g. PIPX_HOME=/opt/pipx)") for p in programs]
    for what, path, instead in checked:
        if _under(path, "/tmp") or _under(path, "/var/tmp"):
            result.warnings.append(
                f"{what} {path} is under /tmp: PrivateTmp=yes gives the service its own "
                f"empty /tmp, so it would not see it; move it to {instead}"
            )
        elif _under(path, "/home") or _under(path, "/root") or _under(path, "/run/user"):
            result.warnings.append(
                f"{what} {path} is under a home directory: ProtectHome=yes hides it from "
                f"the service; move it to {instead}"
            )
    hidden = any(w.startswith("data_dir") for w in result.warnings)
    if not _under(data_dir, STATE_DIR) and not hidden:
        result.warnings.append(
            f"data_dir {data_dir} is outside StateDirectory ({STATE_DIR}): the unit adds "
            "ReadWritePaths for it; it must exist and be writable by the service's dynamic user "
            "(or set User= in a drop-in)"
        )
    return result


def unit_file(
    exe: str, config: str, documentation: str | None = None, unit_plan: UnitPlan | None = None
) -> str:
    p = unit_plan or UnitPlan(config=config)
    if p.low_ports:
        capabilities = (
            "# Binds a port below 1024: " + ", ".join(p.low_ports) + "\n"
            "AmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"
        )
    else:
        capabilities = "CapabilityBoundingSet=\n"
    read_write = "" if _under(p.data_dir, STATE_DIR) else f"ReadWritePaths={p.data_dir}\n"
    return UNIT.format(
        exe=exe, config=config, docs=documentation or docs(), capabilities=capabilities, read_write=read_write
    )

"""systemd integration: the sd_notify protocol (READY, WATCHDOG, STOPPING) and a unit file."""

from __future__ import annotations

import os
import socket


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


UNIT = """\
[Unit]
Description=router: signals from HTTP, webhooks, forms, email, SMS and schedules into workflows
Documentation=file://{docs}
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exe} serve -c {config}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
TimeoutStopSec=30s
WatchdogSec=30s
DynamicUser=yes
StateDirectory=router
WorkingDirectory=/var/lib/router
Environment=ROUTER_DATA_DIR=/var/lib/router
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
UMask=0077

[Install]
WantedBy=multi-user.target
"""


def unit_file(exe: str, config: str, docs: str = "/usr/share/doc/router/README.md") -> str:
    return UNIT.format(exe=exe, config=config, docs=docs)

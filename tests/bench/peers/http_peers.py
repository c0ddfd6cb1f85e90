"""The HTTP peers: each starts, answers a POST of BODY with a 2xx, and is returned as a Service.

Every start function takes the run's Context and raises Skip with the reason when its peer
cannot be had; the caller reports that and goes on with the others.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench.http import ENDPOINTS  # the `fast` endpoint: journaled data + a 1-step async workflow
from tests.bench.peers.procs import Service, Skip, spawn, terminate, wait_answers
from tests.bench.peers.tools import Context, ensure_command, ensure_npm, package_version
from tests.daemon import RouterProcess, free_port
from tests.standins.bare_asgi import BareServer


def _listen_for_ready(path: Path, started: float, out: dict[str, float]) -> Callable[[], None]:
    """A systemd-style NOTIFY_SOCKET at `path`; out["ready"] = seconds from `started` to READY=1."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set() and "ready" not in out:
            try:
                message = sock.recv(4096)
            except TimeoutError:
                continue
            if b"READY=1" in message.split(b"\n"):
                out["ready"] = time.perf_counter() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(2)
        sock.close()

    return close


def start_router(ctx: Context) -> Service:
    """The real daemon from a generated router.toml; start-up is measured to its READY=1."""
    folder = ctx.work / "router-http"
    folder.mkdir()
    notify = folder / "notify.sock"
    router = RouterProcess(folder, ENDPOINTS, env={"NOTIFY_SOCKET": str(notify)})
    times: dict[str, float] = {}
    started = time.perf_counter()
    close = _listen_for_ready(notify, started, times)
    service: Service | None = None
    try:
        router.start(wait=False)
        assert router.proc is not None
        service = Service("router", router.proc.pid, "", 0.0, lambda: _stop_router(router))
        router.wait_ready(60)  # polls /readyz
        times["readyz"] = time.perf_counter() - started
        deadline = time.monotonic() + 10
        while "ready" not in times and time.monotonic() < deadline:
            time.sleep(0.01)
        service.startup_s = times.get("ready", times["readyz"])
        service.notes.append(
            f"start-up: READY=1 after {times.get('ready', float('nan')):.2f} s, "
            f"first /readyz 200 after {times['readyz']:.2f} s"
        )
        service.target = router.url("endpoints.fast")
        wait_answers(service.target, router.proc, time.perf_counter(), 10, expect=b'"received"')
    except BaseException:
        if service is not None:
            service.stop()
        else:
            _stop_router(router)
        raise
    finally:
        close()
    return service


def _stop_router(router: RouterProcess) -> None:
    router.stop()


def start_bare(ctx: Context) -> Service:
    started = time.perf_counter()
    bare = BareServer()
    service = Service("bare", bare.pid, bare.url("/"), time.perf_counter() - started, bare.stop)
    service.notes.append("start-up polled every 0.1 s by BareServer")
    return service


NODE_RED_SETTINGS = """\
module.exports = {{
  uiHost: "127.0.0.1",
  uiPort: {port},
  httpAdminRoot: false,          // no editor and no admin API: the runtime serves the flow only
  flowFile: "flows.json",
  credentialSecret: false,       // no key to generate or ask for
  logging: {{ console: {{ level: "warn", metrics: false, audit: false }} }},
  diagnostics: {{ enabled: false, ui: false }},
  runtimeState: {{ enabled: false, ui: false }},
  telemetry: {{ enabled: false }},
  externalModules: {{ autoInstall: false, palette: {{ allowInstall: false }} }},
}};
"""

NODE_RED_FLOW = [
    {"id": "bench-tab", "type": "tab", "label": "bench"},
    {
        "id": "bench-in",
        "type": "http in",
        "z": "bench-tab",
        "name": "",
        "url": "/bench",
        "method": "post",
        "upload": False,
        "wires": [["bench-out"]],
    },
    {
        "id": "bench-out",
        "type": "http response",
        "z": "bench-tab",
        "name": "",
        "statusCode": "200",
        "headers": {},
        "wires": [],
    },
]


def start_node_red(ctx: Context) -> Service:
    """Node-RED 4 (5.x needs Node 22): a flow `http in` (POST /bench) -> `http response` 200."""
    script = ensure_npm(
        ctx,
        "node-red",
        {"name": "router-bench-node-red", "private": True, "dependencies": {"node-red": "^4"}},
        "node_modules/node-red/red.js",
    )
    user_dir = ctx.work / "node-red"
    user_dir.mkdir()
    port = free_port()
    (user_dir / "settings.js").write_text(NODE_RED_SETTINGS.format(port=port))
    (user_dir / "flows.json").write_text(json.dumps(NODE_RED_FLOW))
    log = user_dir / "node-red.log"
    started = time.perf_counter()
    proc = spawn(
        ["node", str(script), "--settings", str(user_dir / "settings.js"), "--userDir", str(user_dir)], log
    )
    service = Service("node-red", proc.pid, f"http://127.0.0.1:{port}/bench", 0.0, lambda: terminate(proc))
    try:
        service.startup_s = wait_answers(service.target, proc, started, 120, log, expect=b'"n"')  # the echo
    except BaseException:
        service.stop()
        raise
    service.notes.append(f"node-red {package_version(script.parent / 'package.json')}")
    return service


N8N_WORKFLOW = {
    "id": "RouterBenchFlow1",
    "name": "router-bench",
    "active": True,
    "nodes": [
        {
            "id": "6f1c0a52-0000-4000-8000-000000000001",
            "name": "Webhook",
            "type": "n8n-nodes-base.webhook",
            "typeVersion": 2,
            "position": [0, 0],
            "webhookId": "6f1c0a52-0000-4000-8000-0000000000aa",
            "parameters": {
                "httpMethod": "POST",
                "path": "bench",
                "responseMode": "responseNode",
                "options": {},
            },
        },
        {
            "id": "6f1c0a52-0000-4000-8000-000000000002",
            "name": "Respond",
            "type": "n8n-nodes-base.respondToWebhook",
            "typeVersion": 1.1,
            "position": [220, 0],
            "parameters": {"respondWith": "json", "responseBody": '{"received": true}', "options": {}},
        },
    ],
    "connections": {"Webhook": {"main": [[{"node": "Respond", "type": "main", "index": 0}]]}},
    "settings": {"executionOrder": "v1"},
}


def n8n_env(user_folder: Path, port: int) -> dict[str, str]:
    return {
        "N8N_USER_FOLDER": str(user_folder),  # SQLite (the default DB) lives in <it>/.n8n/
        "N8N_PORT": str(port),
        "N8N_LISTEN_ADDRESS": "127.0.0.1",
        "N8N_HOST": "127.0.0.1",
        "WEBHOOK_URL": f"http://127.0.0.1:{port}/",
        "N8N_ENCRYPTION_KEY": "router-bench-only-not-a-secret",
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
        "N8N_TEMPLATES_ENABLED": "false",
        "N8N_PERSONALIZATION_ENABLED": "false",
        "N8N_HIRING_BANNER_ENABLED": "false",
        "N8N_DISABLE_UI": "true",
        "N8N_SECURE_COOKIE": "false",
        "N8N_LICENSE_AUTO_RENEW_ENABLED": "false",
        "N8N_COMMUNITY_PACKAGES_ENABLED": "false",
        "EXTERNAL_FRONTEND_HOOKS_URLS": "",
        "N8N_DIAGNOSTICS_CONFIG_FRONTEND": "",
        "N8N_DIAGNOSTICS_CONFIG_BACKEND": "",
        "N8N_LOG_LEVEL": "warn",
        # Its task runners' broker listens on a fixed port (5679) unless told otherwise.
        "N8N_RUNNERS_BROKER_PORT": str(free_port()),
    }


def _n8n_cli(script: Path, env: dict[str, str], log: Path, *args: str) -> None:
    with open(log, "ab") as out:
        result = subprocess.run(
            ["node", str(script), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )
    if result.returncode != 0:
        raise Skip(
            f"`n8n {' '.join(args)}` failed ({result.returncode}):\n{log.read_text(errors='replace')[-1500:]}"
        )


def start_n8n(ctx: Context) -> Service:
    """n8n 2.8 (runs on Node 20), the durable peer: Webhook -> Respond to Webhook, imported and
    published with its CLI before the server starts; executions saved to SQLite as by default."""
    script = ensure_npm(
        ctx,
        "n8n",
        {
            "name": "router-bench-n8n",
            "private": True,
            "dependencies": {"n8n": "~2.8.0"},
            # xlsx's own dependency points at a host we cannot reach
            "overrides": {"xlsx": "0.18.5"},
        },
        "node_modules/n8n/bin/n8n",
    )
    folder = ctx.work / "n8n"
    folder.mkdir()
    port = free_port()
    env = {**os.environ, **n8n_env(folder, port)}
    log = folder / "n8n.log"
    (folder / "workflow.json").write_text(json.dumps(N8N_WORKFLOW))
    _n8n_cli(script, env, log, "import:workflow", f"--input={folder / 'workflow.json'}")
    _n8n_cli(script, env, log, "publish:workflow", f"--id={N8N_WORKFLOW['id']}")
    started = time.perf_counter()
    proc = spawn(["node", str(script), "start"], log, env=env)
    service = Service(
        "n8n", proc.pid, f"http://127.0.0.1:{port}/webhook/bench", 0.0, lambda: terminate(proc, 30)
    )
    try:
        service.startup_s = wait_answers(service.target, proc, started, 180, log, expect=b'"received"')
    except BaseException:
        service.stop()
        raise
    service.notes.append(
        f"n8n {package_version(script.parents[1] / 'package.json')}, executions saved to SQLite"
    )
    return service


def start_webhook(ctx: Context) -> Service:
    """adnanh/webhook (Debian's `webhook`): a hook with no command, answering 200 with a message."""
    binary = ensure_command(ctx, "webhook", "webhook")
    folder = ctx.work / "webhook"
    folder.mkdir()
    hooks = folder / "hooks.json"
    hooks.write_text(
        json.dumps([{"id": "bench", "http-methods": ["POST"], "response-message": '{"received": true}'}])
    )
    port = free_port()
    log = folder / "webhook.log"
    started = time.perf_counter()
    proc = spawn([binary, "-hooks", str(hooks), "-ip", "127.0.0.1", "-port", str(port)], log)
    service = Service(
        "webhook", proc.pid, f"http://127.0.0.1:{port}/hooks/bench", 0.0, lambda: terminate(proc)
    )
    try:
        service.startup_s = wait_answers(service.target, proc, started, 30, log, expect=b'"received"')
    except BaseException:
        service.stop()
        raise
    version = subprocess.run([binary, "-version"], capture_output=True, text=True).stdout.split()[-1:]
    service.notes.append(f"webhook {' '.join(version)}")
    return service


HTTP_PEERS: dict[str, tuple[str, Callable[[Context], Service]]] = {
    "router": ("router: journaled data endpoint + 1-step workflow", start_router),
    "bare": ("bare hypercorn-trio ASGI 200 (floor)", start_bare),
    "node-red": ("Node-RED: http in -> http response", start_node_red),
    "n8n": ("n8n: Webhook -> Respond to Webhook", start_n8n),
    "webhook": ("adnanh/webhook: hook, no command", start_webhook),
}

"""The README's promises: its two opening commands, and the repo's router.toml working as is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.daemon import free_port

ROOT = Path(__file__).resolve().parent.parent


def _blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_opens_with_run_and_test_commands() -> None:
    run, test = _blocks()[:2]
    assert "router serve -c router.toml" in run and "pip install" in run
    assert test.strip() in (ROOT / ".ci" / "run").read_text(), "CI must run the README's test command"


def test_embedded_default_config_serves_the_demo(tmp_path: Path) -> None:
    """The repo's own router.toml, unchanged, on free ports (via its ${…:-default} variables)."""
    port = free_port()
    env = {
        **os.environ,
        "ROUTER_DATA_DIR": str(tmp_path / "var"),
        "ROUTER_HTTP_LISTEN": f"127.0.0.1:{port}",
        "ROUTER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ROUTER_SMTP_LISTEN": f"127.0.0.1:{free_port()}",
        "ROUTER_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
    }
    cmd = [sys.executable, "-m", "router.cli"]
    proc = subprocess.Popen(
        [*cmd, "serve", "-c", "router.toml"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "no /healthz within 20 s"
            time.sleep(0.1)
        listing = subprocess.run(
            [*cmd, "endpoints", "-c", "router.toml", "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        urls = {i["name"]: i.get("url") for i in json.loads(listing.stdout)}
        r = httpx.post(urls["invoices"], json={"invoice_amount": 2500, "customer_email": "john@example.com"})
        assert r.status_code == 200 and r.json()["status"] == "received"
        r = httpx.post(urls["invoices"], json={"invoice_amount": 2500})
        assert r.status_code == 422 and r.json() == {"error": "email required"}
        notes = subprocess.run(
            [*cmd, "records", "list", "note", "-c", "router.toml"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert "Invoice raised: €2,500.00" in notes.stdout, notes.stderr
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_every_jwt_error_code_is_documented() -> None:
    """The README's JWT row names every `error` code the endpoint JWT check can answer."""
    source = (ROOT / "channels" / "http" / "jwt_auth.py").read_text()
    codes = set(re.findall(r'JwtFailure\(\s*\d{3},\s*"([a-z_]+)"', source))
    assert {"token_expired", "token_not_yet_valid", "forbidden"} <= codes
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| JWT "))
    assert {code for code in codes if f'"{code}"' not in row} == set()


def test_packaged_default_config_is_the_repos_router_toml() -> None:
    """`router install-service` writes router/default.toml (shipped in the wheel); it must be the
    router.toml this README documents and the test above serves."""
    assert (ROOT / "router" / "default.toml").read_text() == (ROOT / "router.toml").read_text()

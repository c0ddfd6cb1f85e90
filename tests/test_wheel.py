"""Issue 14, must-show 5: a wheel built with `python -m build` installs into a fresh venv outside
the checkout, and `router --version`, `router serve` and the dashboard's templates and static
files work from it. Built and installed once per session (~1 min with pip's cache)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon import free_port

ROOT = Path(__file__).resolve().parent.parent


def _files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True
    )
    if out.returncode != 0:
        pytest.skip(f"not a git checkout: {out.stderr.strip()}")
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin/ dir of a fresh venv with the wheel installed (and nothing of the checkout)."""
    try:
        import build  # noqa: F401 - only to know `python -m build` is there
    except ImportError:
        pytest.skip("the `build` package is not installed (pip install build; it is in the [test] extra)")
    work = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools writes build/ and *.egg-info beside the sources, and parallel
    # runs must not race on the checkout's.
    src = work / "src"
    for name in _files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if built.returncode != 0 and "No module named" in built.stderr:
        pytest.skip(f"python -m build cannot run here: {built.stderr.strip()[-300:]}")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list((work / "dist").glob("router_daemon-*.whl"))
    assert len(wheels) == 1, wheels
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheels[0])],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    yield venv / "bin"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "ROUTER_CONFIG")}
    return env


def test_wheel_installs_and_serves_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    from router.version import version

    router = str(installed / "router")
    where = subprocess.run(
        [str(installed / "python"), "-c", "import router, config; print(router.__file__)"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(installed.parent)) and not where.startswith(str(ROOT)), where
    out = subprocess.run([router, "--version"], cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"router {version()}", out.stderr

    # The embedded default config, written by install-service, serves as is (the README walk-through).
    root = tmp_path / "root"
    subprocess.run(
        [router, "install-service", "--root", str(root)],
        cwd=tmp_path,
        env=_env(),
        check=True,
        capture_output=True,
    )
    config = root / "etc/router/router.toml"
    http, admin = free_port(), free_port()
    env = {
        **_env(),
        "ROUTER_DATA_DIR": str(tmp_path / "var"),
        "ROUTER_HTTP_LISTEN": f"127.0.0.1:{http}",
        "ROUTER_PUBLIC_URL": f"http://127.0.0.1:{http}",
        "ROUTER_SMTP_LISTEN": f"127.0.0.1:{free_port()}",
        "ROUTER_ADMIN_LISTEN": f"127.0.0.1:{admin}",
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [router, "serve", "-c", str(config)], cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{admin}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "not ready within 30 s:\n" + log.read_text()
            time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{admin}", timeout=10) as c:
            page = c.get("/")  # no [admin] token on loopback: the dashboard, rendered from its templates
            assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:500]
            assert "/static/app.css" in page.text
            css = c.get("/static/app.css")
            assert (
                css.status_code == 200
                and css.headers["content-type"].startswith("text/css")
                and len(css.content) > 100
            )
            assert c.get("/static/app.js").status_code == 200
            assert c.get("/openapi.json").json()["openapi"].startswith("3.1")
        listing = subprocess.run(
            [router, "endpoints", "-c", str(config), "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        hello = next(i["url"] for i in __import__("json").loads(listing.stdout) if i["name"] == "hello")
        assert httpx.post(hello, json={"name": "wheel"}).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()
    unit = (root / "etc/systemd/system/router.service").read_text()
    assert f"ExecStart={router} serve -c /etc/router/router.toml" in unit
    docs = next(line for line in unit.splitlines() if line.startswith("Documentation="))
    readme = Path(docs.split("=", 1)[1].split()[0].removeprefix("file://"))
    assert readme.is_file() and "router" in readme.read_text()  # the installed package's own metadata

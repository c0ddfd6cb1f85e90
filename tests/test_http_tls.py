"""HTTPS on the public listener (issue 16): curl --cacert, HTTP/2 by ALPN, client certificates
required and checked, a renewed certificate picked up on SIGHUP. Certificates are made here with
trustme; the clients are curl and httpx."""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import trustme

from tests.daemon import RouterProcess
from tests.tools import need

CONFIG = """
[webhooks.in]

[[workflows]]
name = "note"
listen = "webhooks.in"

[[workflows.steps]]
action = "log"
message = "over tls: {{ __data.n }}"
"""


def write_pair(ca: trustme.CA, directory: Path, name: str) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for extra in cert.cert_chain_pems[1:]:
        with cert_path.open("ab") as out:
            out.write(extra.bytes())
    return cert_path, key_path


def start_tls(
    tmp_path: Path,
    cert: Path,
    key: Path,
    client_ca: Path | None = None,
    client: tuple[str, str] | None = None,
    ca: Path | None = None,
) -> RouterProcess:
    extra = f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
    if client_ca is not None:
        extra += f'tls_client_ca = "{client_ca}"\n'
    router = RouterProcess(tmp_path, CONFIG, http_extra=extra)
    router.start(wait=False)
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(*client)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert router.proc is not None and router.proc.poll() is None, router.log()
        try:
            if (
                httpx.get(
                    f"https://127.0.0.1:{router.http_port}/readyz", verify=context, timeout=1
                ).status_code
                == 200
            ):
                return router
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(router.log())


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", *args], capture_output=True, text=True, timeout=30
    )


@pytest.fixture
def ca(tmp_path: Path) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


def test_https_with_curl_http2_and_a_renewed_certificate_on_sighup(
    tmp_path: Path, ca: tuple[trustme.CA, Path]
) -> None:
    need(shutil.which("curl") is not None, "curl (Debian package) is needed")
    authority, ca_path = ca
    cert, key = write_pair(authority, tmp_path, "server")
    router = start_tls(tmp_path, cert, key, ca=ca_path)
    try:
        base = f"https://127.0.0.1:{router.http_port}"
        hook = router.url("webhooks.in").replace("http://", "https://")
        out = curl(
            "--http1.1",
            "--cacert",
            str(ca_path),
            "-w",
            "%{http_code} %{http_version}",
            "-o",
            "/dev/null",
            "-H",
            "content-type: application/json",
            "-d",
            '{"n": 1}',
            hook,
        )
        assert out.stdout == "200 1.1", (out.stdout, out.stderr)
        out = curl(
            "--http2",
            "--cacert",
            str(ca_path),
            "-w",
            "%{http_code} %{http_version}",
            "-o",
            "/dev/null",
            "-H",
            "content-type: application/json",
            "-d",
            '{"n": 2}',
            hook,
        )
        assert out.stdout == "200 2", (out.stdout, out.stderr)
        # Plain HTTP on the TLS port, and a client that does not trust our CA: both refused.
        assert curl("-o", "/dev/null", f"http://127.0.0.1:{router.http_port}/healthz").returncode != 0
        assert curl("-o", "/dev/null", f"{base}/healthz").returncode == 60  # unknown issuer
        router.wait_for(lambda: router.log().count("over tls:") == 2)

        # Renewal: a certificate from another CA replaces the files; SIGHUP; new handshakes use it.
        other = trustme.CA()
        other_path = tmp_path / "other-ca.pem"
        other.cert_pem.write_to_path(str(other_path))
        write_pair(other, tmp_path, "server")
        router.signal(signal.SIGHUP)
        router.wait_for(lambda: "msg=reloaded" in router.log(), timeout=20)
        assert (
            curl(
                "--cacert", str(other_path), "-o", "/dev/null", "-w", "%{http_code}", f"{base}/healthz"
            ).stdout
            == "200"
        )
        assert curl("--cacert", str(ca_path), "-o", "/dev/null", f"{base}/healthz").returncode == 60
    finally:
        router.stop()
    assert "Traceback" not in router.log()


def test_client_certificates_are_required_and_checked(tmp_path: Path, ca: tuple[trustme.CA, Path]) -> None:
    need(shutil.which("curl") is not None, "curl (Debian package) is needed")
    authority, ca_path = ca
    cert, key = write_pair(authority, tmp_path, "server")
    clients = trustme.CA()
    clients_path = tmp_path / "clients.pem"
    clients.cert_pem.write_to_path(str(clients_path))
    good_cert, good_key = write_pair(clients, tmp_path, "client")
    stranger = trustme.CA()
    bad_cert, bad_key = write_pair(stranger, tmp_path, "stranger")
    router = start_tls(
        tmp_path, cert, key, client_ca=clients_path, client=(str(good_cert), str(good_key)), ca=ca_path
    )
    try:
        hook = router.url("webhooks.in").replace("http://", "https://")
        base = [
            "--cacert",
            str(ca_path),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: application/json",
            "-d",
            '{"n": 3}',
        ]
        assert curl(*base, "--cert", str(good_cert), "--key", str(good_key), hook).stdout in ("200", "202")
        assert curl(*base, hook).returncode != 0  # no certificate: the handshake fails, nothing journaled
        assert curl(*base, "--cert", str(bad_cert), "--key", str(bad_key), hook).returncode != 0
        with pytest.raises((httpx.HTTPError, ssl.SSLError)):
            httpx.post(
                hook, json={"n": 4}, verify=ssl.create_default_context(cafile=str(ca_path)), timeout=10
            )
        router.wait_for(lambda: router.log().count("over tls:") == 1)
        assert len(router.signals()) == 1  # the refused handshakes never reached the app
    finally:
        router.stop()


def test_tls_config_mistakes_are_reported(tmp_path: Path, ca: tuple[trustme.CA, Path]) -> None:
    cert, _ = write_pair(ca[0], tmp_path, "server")
    router = RouterProcess(
        tmp_path, CONFIG, http_extra=f'tls_cert = "{cert}"\ntls_client_ca = "{tmp_path}/nope.pem"\n'
    )
    out = router.cli("check", check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "http.tls_key" in text and "both tls_cert and tls_key" in text
    assert "http.tls_client_ca" in text and "file not found" in text

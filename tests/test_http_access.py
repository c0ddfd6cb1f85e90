"""Who may call a source (issue 16): HTTP Basic (plain and hashed), a header token, IP
allow-lists, and `trust_proxy` believing X-Forwarded-For only from `trusted_proxies`. Against the
real daemon with httpx and curl."""

from __future__ import annotations

import shutil
import subprocess

import httpx

from config.passwords import hash_password

HASHED = hash_password("s3cret-hashed", iterations=1000)

CONFIG = f"""
[webhooks.basic]
basic_auth = "ops:s3cret plain"

[webhooks.hashed]
basic_auth = "ops:{HASHED}"

[webhooks.token]
auth_header = "X-Token"
auth_token = "tok-123"

[webhooks.office]
allow_ips = ["203.0.113.0/24", "2001:db8::/32"]

[webhooks.local]
allow_ips = ["127.0.0.1"]
basic_auth = "ops:both"

[endpoints.echo]
allow_ips = ["203.0.113.7"]
return_type = "data"
return_data = '{{"remote": "{{{{ __data.__remote_addr }}}}"}}'
"""


def test_basic_auth_header_token_and_allow_lists(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(CONFIG)
    url = {name: router.url(f"webhooks.{name}") for name in ("basic", "hashed", "token", "office", "local")}
    with httpx.Client(timeout=20) as client:
        ok = client.post(url["basic"], json={}, auth=("ops", "s3cret plain"))
        assert ok.status_code == 200, ok.text
        for auth in [("ops", "wrong"), ("nope", "s3cret plain"), None]:
            r = client.post(url["basic"], json={}, auth=auth)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic realm="), r.text
        assert client.post(url["basic"], json={}, headers={"Authorization": "Basic !!!"}).status_code == 401

        assert client.post(url["hashed"], json={}, auth=("ops", "s3cret-hashed")).status_code == 200
        assert client.post(url["hashed"], json={}, auth=("ops", "s3cret-hashed")).status_code == 200  # cached
        assert client.post(url["hashed"], json={}, auth=("ops", "s3cret-hashe")).status_code == 401

        assert client.post(url["token"], json={}, headers={"X-Token": "tok-123"}).status_code == 200
        assert client.post(url["token"], json={}, headers={"X-Token": "tok-124"}).status_code == 401
        assert client.post(url["token"], json={}).status_code == 401

        # 127.0.0.1 is not in the office's networks; a forged X-Forwarded-For changes nothing
        # (trust_proxy is off).
        r = client.post(url["office"], json={}, headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 403, r.text
        assert client.post(url["local"], json={}, auth=("ops", "both")).status_code == 200
        assert client.post(url["local"], json={}).status_code == 401  # allowed address, no credentials
    assert len(router.signals()) == 5
    if shutil.which("curl") is not None:
        out = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-u",
                "ops:s3cret plain",
                "-H",
                "content-type: application/json",
                "-d",
                "{}",
                url["basic"],
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.stdout == "200"


def test_trust_proxy_believes_forwarded_for_only_from_trusted_proxies(router_factory) -> None:  # type: ignore[no-untyped-def]
    behind = router_factory(CONFIG, router_extra='trust_proxy = true\ntrusted_proxies = ["127.0.0.1"]')
    echo = behind.url("endpoints.echo")
    office = behind.url("webhooks.office")
    with httpx.Client(timeout=20) as client:
        # From the trusted proxy (us, on loopback): the client is the right-most untrusted hop.
        r = client.get(echo, headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
        assert r.status_code == 200 and r.json() == {"remote": "203.0.113.7"}, r.text
        r = client.get(echo, headers={"X-Forwarded-For": "203.0.113.7, 127.0.0.1"})  # a proxy chain
        assert r.status_code == 200 and r.json() == {"remote": "203.0.113.7"}, r.text
        assert client.post(office, json={}, headers={"X-Forwarded-For": "2001:db8::5"}).status_code == 200
        # The caller put the allowed address first, the proxy appended the real one: refused.
        r = client.get(echo, headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.1"})
        assert r.status_code == 403, r.text
        assert client.get(echo, headers={"X-Forwarded-For": "not-an-ip"}).status_code == 403
        assert client.get(echo).status_code == 403  # no header: the socket peer, 127.0.0.1

    elsewhere = router_factory(CONFIG, router_extra='trust_proxy = true\ntrusted_proxies = ["192.0.2.1"]')
    with httpx.Client(timeout=20) as client:
        # We are not a trusted proxy here: a spoofed header from an untrusted peer is ignored.
        r = client.get(elsewhere.url("endpoints.echo"), headers={"X-Forwarded-For": "203.0.113.7"})
        assert r.status_code == 403, r.text


def test_access_config_mistakes_are_reported(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory(
        """
[webhooks.a]
allow_ips = ["10.0.0.300"]
basic_auth = "nopassword"
auth_header = "X-Token"

[router]
""".replace("[router]\n", ""),
        start=False,
    )
    out = router.cli("check", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "webhooks.a.allow_ips" in text and "not an IP address" in text, text
    assert "webhooks.a.basic_auth" in text and "user:password" in text, text
    assert "webhooks.a.auth_token" in text, text

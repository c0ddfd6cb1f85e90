"""Issue 7, must-show 4: the admin token is compared in constant time.

Timing a prefix-correct token against an all-wrong one is too noisy to assert on a shared box,
so these tests pin the implementation instead: every comparison goes through
`hmac.compare_digest` over two fixed-length (32-byte SHA-256) digests, whatever the length and
content of the token given, and there is no other path (no `==`, no early return on length or
prefix) from a request to a verdict.
"""

from __future__ import annotations

import ast
import hmac
import inspect
from pathlib import Path

import pytest

from router.admin import auth, core
from router.admin.auth import (
    Principal,
    csrf_token,
    csrf_valid,
    digest,
    make_session,
    session_valid,
    token_matches,
)

TOKEN = "correct-horse-battery-staple-0123456789"


@pytest.fixture
def compare_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    return calls


@pytest.mark.parametrize(
    "given",
    [
        "",
        "c",
        TOKEN[:1],
        TOKEN[:-1],
        TOKEN[:-1] + "X",
        "X" + TOKEN[1:],
        TOKEN + "x",
        "z" * 4096,
        "ü" * 7,
        TOKEN,
    ],
)
def test_every_token_is_compared_as_two_32_byte_digests(
    given: str, compare_calls: list[tuple[bytes, bytes]]
) -> None:
    assert token_matches(given, TOKEN) is (given == TOKEN)
    assert len(compare_calls) == 1, "exactly one comparison, never a shortcut"
    a, b = compare_calls[0]
    assert isinstance(a, bytes) and isinstance(b, bytes)
    assert len(a) == len(b) == 32
    assert b == digest(TOKEN)


def test_an_empty_configured_token_never_matches(compare_calls: list[tuple[bytes, bytes]]) -> None:
    assert token_matches("", "") is False
    assert len(compare_calls) == 1  # still compared: no branch before the comparison


def test_token_matches_has_no_other_comparison() -> None:
    tree = ast.parse(inspect.getsource(token_matches))
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert compares == [], "token_matches must not compare with ==, <, len() …"
    returns = [n for n in ast.walk(tree) if isinstance(n, ast.Return)]
    assert len(returns) == 1, "one return: no early exit"
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "hmac.compare_digest" in calls and "digest" in calls


def test_requests_reach_the_token_only_through_token_matches() -> None:
    """The request path (core.Admin.authenticate, the login form) uses token_matches, never ==."""
    for path in (Path(core.__file__), Path(core.__file__).with_name("dashboard.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                names |= {n.arg for n in ast.walk(node) if isinstance(n, ast.keyword) and n.arg}
                secretish = {
                    n for n in names if "token" in n.lower() or n in ("given", "session", "cookie", "mac")
                }
                assert not secretish, f"{path.name}: compares a secret directly: {ast.unparse(node)}"
    assert "token_matches(" in inspect.getsource(core.Admin.authenticate)


class _Headers(dict):  # type: ignore[type-arg]
    def get(self, key: str, default: str = "") -> str:  # type: ignore[override]
        for k, v in self.items():
            if k.lower() == key.lower():
                return str(v)
        return default


class _Daemon:
    def __init__(self, token: str) -> None:
        class Cfg:
            class admin:
                pass

        Cfg.admin.token = token  # type: ignore[attr-defined]
        self.cfg = Cfg()


def test_authenticate_bearer_cookie_and_open_mode(compare_calls: list[tuple[bytes, bytes]]) -> None:
    admin = core.Admin(_Daemon(TOKEN))
    ok = admin.authenticate(_Headers({"Authorization": f"Bearer {TOKEN}"}), {}, "10.0.0.1")
    assert ok is not None and ok.via == "bearer" and ok.who.startswith("token:") and TOKEN not in ok.who
    assert admin.authenticate(_Headers({"Authorization": f"Bearer {TOKEN[:1]}"}), {}, "10.0.0.1") is None
    assert admin.authenticate(_Headers({"Authorization": "Basic abc"}), {}, "10.0.0.1") is None
    assert admin.authenticate(_Headers({}), {}, "10.0.0.1") is None
    # A wrong bearer token is refused even alongside a valid cookie.
    session = make_session(TOKEN)
    assert (
        admin.authenticate(_Headers({"Authorization": "Bearer nope"}), {"router_session": session}, "x")
        is None
    )
    by_cookie = admin.authenticate(_Headers({}), {"router_session": session}, "10.0.0.2")
    assert by_cookie is not None and by_cookie.via == "cookie" and by_cookie.session == session
    # Mutations from a cookie session need the CSRF token; bearer calls do not.
    assert admin.csrf_ok(by_cookie, "GET", "") is True
    assert admin.csrf_ok(by_cookie, "POST", "") is False
    assert admin.csrf_ok(by_cookie, "POST", csrf_token(TOKEN, session)) is True
    assert admin.csrf_ok(ok, "DELETE", "") is True
    # No token configured (loopback only): open.
    assert core.Admin(_Daemon("")).authenticate(_Headers({}), {}, "127.0.0.1") == Principal(
        "open", "open", "127.0.0.1"
    )


def test_sessions_expire_and_die_with_the_token() -> None:
    session = make_session(TOKEN, now=1000.0, ttl=60)
    assert session_valid(session, TOKEN, now=1030.0)
    assert not session_valid(session, TOKEN, now=1061.0)  # expired
    assert not session_valid(session, TOKEN + "-rotated", now=1030.0)  # token changed
    forged = session.split(".")[0] + "9." + session.split(".")[1]
    assert not session_valid(forged, TOKEN, now=1030.0)
    assert not session_valid("garbage", TOKEN) and not session_valid("1.2", TOKEN)
    assert csrf_valid(csrf_token(TOKEN, session), TOKEN, session)
    assert not csrf_valid(csrf_token(TOKEN, session), TOKEN, make_session(TOKEN, now=5.0))


def test_admin_refuses_to_serve_without_token_on_a_public_address(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "router.toml"
    cfg.write_text(
        f'[router]\ndata_dir = "{tmp_path}/var"\n\n[admin]\nlisten = "0.0.0.0:18181"\ntoken = ""\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "router.cli", "check", "-c", str(cfg)], capture_output=True, text=True
    )
    assert out.returncode == 78  # EX_CONFIG
    assert "admin.token" in out.stderr and "loopback" in out.stderr
    serve = subprocess.run(
        [sys.executable, "-m", "router.cli", "serve", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert serve.returncode == 78 and "admin.token" in serve.stderr

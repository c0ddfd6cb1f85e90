"""Issue 14, CLI manners: --version, help everywhere, tables with headers, --json on every
listing, one-line bind errors, documented exit codes, hash-password, shell completion."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from config.passwords import verify_password
from router.cli.parser import build_parser
from router.exitcodes import EX_CONFIG, EX_UNAVAILABLE, NOT_FOUND
from tests.daemon import RouterProcess

CLI = [sys.executable, "-m", "router.cli"]
LONG = "a-very-long-endpoint-name-that-used-to-push-every-column-out-of-line"
BODY = f"""
[endpoints.hello]
return_type = "data"
return_data = "hi"

[endpoints.{LONG}]
return_type = "data"

[webhooks.payments]

[schedules.tick]
every = "1h"

[[workflows]]
name = "note"
listen = "endpoints.hello"

[[workflows.steps]]
action = "create_record"
record_type = "note"
fields = {{ text = "hello {{{{ __data.n }}}}" }}
"""


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    from router.version import version

    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"router {version()}"
    assert version()[0].isdigit()


def _walk(parser: argparse.ArgumentParser):  # type: ignore[no-untyped-def]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"router {name}", helps.get(name), sub
                yield from _walk(sub)


def test_every_subcommand_and_option_has_a_description() -> None:
    parser = build_parser()
    missing = []
    for name, help_text, sub in _walk(parser):
        if not help_text:
            missing.append(name)
        for action in sub._actions:
            if action.help is None or (action.help != argparse.SUPPRESS and not action.help.strip()):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
    text = run("signals", "--help").stdout
    assert "only this source" in text and "exit codes:" in text and "78" in text


def _header_and_columns(text: str) -> tuple[list[str], list[int]]:
    lines = text.splitlines()
    header = lines[0]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    return lines, starts


def test_tables_have_a_header_and_columns_that_fit_long_names(router_factory) -> None:  # type: ignore[no-untyped-def]
    router: RouterProcess = router_factory(BODY)
    url = router.url("endpoints.hello")
    import httpx

    for n in range(2):
        assert httpx.post(url, json={"n": n}).status_code == 200
    router.wait_for(lambda: len(json.loads(router.cli("records", "list", "note", "--json").stdout)) == 2)

    text = router.cli("endpoints").stdout
    lines, starts = _header_and_columns(text)
    assert lines[0].split() == ["KIND", "NAME", "STATE", "URL", "/", "ADDRESS"]
    long_line = next(line for line in lines if LONG in line)
    state_col = lines[0].index("STATE")
    for line in lines[1:]:  # every row's STATE starts where the header's does
        assert line[state_col:].split()[0] in ("active", "inactive"), (line, text)
    assert long_line.index(LONG) == lines[0].index("NAME")

    signals = router.cli("signals").stdout.splitlines()
    assert signals[0].split() == ["ID", "RECEIVED", "SOURCE", "STATUS", "ATTEMPTS", "ERROR"]
    assert len(signals) == 3

    records = router.cli("records", "list", "note").stdout.splitlines()
    assert "TEXT" in records[0].split() and any("hello 1" in line for line in records[1:])
    assert len(records) == 3
    schedules = router.cli("schedules").stdout.splitlines()
    assert schedules[0].split()[:3] == ["NAME", "WHEN", "TIMEZONE"]

    # --json on every listing, each parseable
    for verb in (["endpoints"], ["signals"], ["records", "list", "note"], ["schedules"]):
        items = json.loads(router.cli(*verb, "--json").stdout)
        assert isinstance(items, list) and items, verb
    rec = json.loads(router.cli("records", "list", "note", "--json").stdout)[0]
    shown = router.cli("records", "show", "note", str(rec["id"])).stdout
    assert shown.splitlines()[0].split() == ["FIELD", "VALUE"]
    assert (
        json.loads(router.cli("records", "show", "note", str(rec["id"]), "--json").stdout)["id"] == rec["id"]
    )


def test_not_found_exits_non_zero_everywhere(router_factory) -> None:  # type: ignore[no-untyped-def]
    router: RouterProcess = router_factory(BODY, start=False)
    cases = [
        (("signals", "--source", "nope"), "no source named 'nope'"),
        (("endpoints", "rotate", "nope"), "no source named 'nope'"),
        (("replay", "01NOPE"), "no signal 01NOPE"),
        (("records", "list", "nope"), "no records of type 'nope'"),
        (("records", "show", "note", "1"), "no note record 1"),
        (("records", "show", "other", "1"), "no records of type 'other'"),
        (("jwt", "nope"), "no source named 'nope'"),
    ]
    for args, message in cases:
        out = router.cli(*args, check=False)
        assert out.returncode == NOT_FOUND and message in out.stderr, (args, out.returncode, out.stderr)
        assert "Traceback" not in out.stderr
    assert router.cli("signals", "--source", "hello").returncode == 0  # a known source with no signals
    empty = router.cli(
        "records", "list", "note"
    )  # a type the config names, no record yet: empty, not missing
    assert (
        empty.stdout.strip() == "no note records"
        and json.loads(router.cli("records", "list", "note", "--json").stdout) == []
    )
    missing = run("signals", "-c", str(router.tmp / "absent.toml"))
    assert missing.returncode == EX_CONFIG and "no such config file" in missing.stderr


@pytest.mark.parametrize("listener", ["http", "smtp", "admin"])
def test_a_port_in_use_is_one_line_and_exit_69(tmp_path: Path, listener: str) -> None:
    router = RouterProcess(tmp_path, BODY)
    port = {"http": router.http_port, "smtp": router.smtp_port, "admin": router.admin_port}[listener]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        out = subprocess.run(
            [*CLI, "serve", "-c", str(router.config_path)], capture_output=True, text=True, timeout=60
        )
    assert out.returncode == EX_UNAVAILABLE, out.stderr
    assert f"{listener}.listen 127.0.0.1:{port}: address already in use" in out.stderr
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if "level=error" in line]
    assert len(errors) == 1, out.stderr


def test_config_error_exits_78(tmp_path: Path) -> None:
    cfg = tmp_path / "router.toml"
    cfg.write_text('[http]\nlisten = "nowhere"\n')
    assert run("check", "-c", str(cfg)).returncode == EX_CONFIG
    serve = run("serve", "-c", str(cfg))
    assert serve.returncode == EX_CONFIG and "http.listen" in serve.stderr
    assert run("serve", "-c", str(tmp_path / "absent.toml")).returncode == EX_CONFIG


def test_hash_password_reads_stdin_never_argv() -> None:
    out = run("hash-password", "alice", stdin="s3cret pass\n")
    assert out.returncode == 0, out.stderr
    user, _, quoted = out.stdout.strip().partition(" = ")
    assert user == "alice" and verify_password("s3cret pass", json.loads(quoted))
    assert "s3cret" not in out.stdout
    bare = run("hash-password", stdin="other\n").stdout.strip()
    assert verify_password("other", bare)
    assert run("hash-password", stdin="\n").returncode != 0  # an empty password is refused
    # The hash is what [smtp] users takes.
    toml = f'[smtp.users]\nalice = "{bare}"\n'
    import tomllib

    from config import parse_config

    assert parse_config(tomllib.loads(toml)).smtp.users["alice"] == bare


def test_shell_completion_scripts() -> None:
    for shell in ("bash", "zsh"):
        out = run("completion", shell)
        assert out.returncode == 0 and "install-service" in out.stdout and "--source" in out.stdout
    bash = run("completion", "bash").stdout
    check = subprocess.run(["bash", "-n"], input=bash, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

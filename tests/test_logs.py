"""Log lines a caller cannot forge (issue 14): caller text through every channel, into `log`
steps and refused requests, stays inside one value of one line, in logfmt and in JSON; under
systemd's JOURNAL_STREAM each line carries its syslog priority.

logfmt lines are parsed by Heroku's `logfmt` (npm, the format's original implementation, run with
node): `.ci/run` installs it into `.ci/node`; elsewhere the logfmt half skips with a reason.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import smtplib
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog
from twilio.request_validator import RequestValidator

from router.ops import logs
from tests.daemon import RouterProcess
from tests.tools import need

ROOT = Path(__file__).resolve().parents[1]
NODE_LOGFMT = ROOT / ".ci" / "node" / "node_modules" / "logfmt"
TOKEN = "twilio-test-auth-token-0123456789"

# What a caller sends, each meant to break out of its value.
PAYLOADS = [
    "x level=error signal_id=FORGED",
    "x\r\nlevel=error msg=FORGED time=0",
    'x" level=error signal_id="FORGED',
    'x\\" level=error signal_id=FORGED',
    "x=FORGED=y\tlevel=error",
    "\x1b[31mFORGED\x1b[0m level=error\x00",
    "FORGED " + "é" * 5000,  # 10 KB of UTF-8
]
MARK = "FORGED"


def parse_logfmt(lines: list[str]) -> list[dict[str, Any]]:
    need(
        shutil.which("node") is not None and NODE_LOGFMT.exists(),
        "node and npm's logfmt (.ci/run installs them into .ci/node) are needed to parse logfmt",
    )
    script = (
        f"const logfmt = require({json.dumps(str(NODE_LOGFMT))});"
        "const lines = require('fs').readFileSync(0, 'utf8').split('\\n').filter(l => l.length);"
        "process.stdout.write(JSON.stringify(lines.map(l => logfmt.parse(l))));"
    )
    out = subprocess.run(
        ["node", "-e", script],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return list(json.loads(out.stdout))


def parse(fmt: str, text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    if fmt == "json":
        return [json.loads(line) for line in lines]
    return parse_logfmt(lines)


def assert_unforged(records: list[dict[str, Any]], *, expect_marks: int) -> None:
    carrying = 0
    for record in records:
        assert {"time", "level", "logger", "msg"} <= record.keys(), record
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}, record
        assert not any(MARK in str(key) for key in record), record
        assert record.get("signal_id") != MARK and record.get("time") != "0", record
        holders = [key for key, value in record.items() if MARK in str(value)]
        if holders:
            carrying += 1
            assert len(holders) == 1, (holders, record)  # the caller's text is one value
            assert record["level"] != "error", record
    assert carrying >= expect_marks, f"only {carrying} lines carry the payloads, expected {expect_marks}"


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_every_payload_renders_as_one_value(fmt: str) -> None:
    buf = io.StringIO()
    logs.setup(fmt, "info", stream=buf)
    try:
        log = structlog.get_logger("router.engine")
        for payload in [*PAYLOADS, "FORGED \udcff\udcfe not utf-8"]:
            log.info("workflow log", workflow="w", step="s", message=payload)
        logs.refused("endpoints", "hello", 401, f"bad key {PAYLOADS[0]}", path="/x")
    finally:
        logs.setup("logfmt", "warning")
    text = buf.getvalue()
    assert text.count("\n") == len(PAYLOADS) + 2  # no payload made a second line
    records = parse(fmt, text)
    assert_unforged(records, expect_marks=len(PAYLOADS) + 2)
    assert [r["msg"] for r in records[:-1]] == ["workflow log"] * (len(PAYLOADS) + 1)
    if fmt == "json":  # JSON keeps the text exactly (the logfmt parser drops escaping backslashes)
        assert [r["message"] for r in records[: len(PAYLOADS)]] == PAYLOADS


def test_a_flood_of_refusals_logs_a_line_a_second_with_a_count() -> None:
    buf = io.StringIO()
    throttle = logs.Throttle(window=3600)
    event: dict[str, Any] = {}
    dropped = 0
    for _ in range(1000):
        event = {"event": "refused", "_throttle": ("http", "hello", "bad key")}
        try:
            throttle(None, "info", event)
        except structlog.DropEvent:
            dropped += 1
    assert dropped == 999
    throttle.window = 0.0  # the window has passed: the next line says how many were dropped
    assert (
        throttle(None, "info", {"event": "refused", "_throttle": ("http", "hello", "bad key")})["suppressed"]
        == 999
    )
    assert buf.getvalue() == ""


def test_journal_stream_lines_carry_their_priority(tmp_path: Path) -> None:
    out = (tmp_path / "journal").open("w")
    st = os.fstat(out.fileno())
    os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    try:
        logs.setup("logfmt", "debug", stream=out)
        log = structlog.get_logger("router.test")
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("e")
        log.critical("c")
        out.flush()
    finally:
        del os.environ["JOURNAL_STREAM"]
        logs.setup("logfmt", "warning")
        out.close()
    prefixes = [line[:3] for line in (tmp_path / "journal").read_text().splitlines()]
    assert prefixes == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    # Not journald's stream (another file): no prefix.
    other = io.StringIO()
    os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    try:
        logs.setup("logfmt", "info", stream=other)
        structlog.get_logger("router.test").info("plain")
    finally:
        del os.environ["JOURNAL_STREAM"]
        logs.setup("logfmt", "warning")
    assert other.getvalue().startswith("time=")


CONFIG = f"""
[twilio]
auth_token = "{TOKEN}"

[endpoints.hello]
return_type = "data"
return_data = '{{"ok": true}}'

[webhooks.hook]

[mailboxes.inbox]
address = "inbox@example.com"

[sms.main]

[[workflows]]
name = "http-log"
listen = ["endpoints.hello", "webhooks.hook"]

[[workflows.steps]]
action = "log"
message = "name: {{{{ __data.name }}}}"

[[workflows]]
name = "mail-log"
listen = "mailboxes.inbox"

[[workflows.steps]]
action = "log"
message = "mail: {{{{ __data.incoming_email.subject }}}} / {{{{ __data.incoming_email.text }}}}"

[[workflows]]
name = "sms-log"
listen = "sms.main"

[[workflows.steps]]
action = "log"
message = "sms: {{{{ __data.incoming_sms.text }}}}"
"""


def _send_everything(router: RouterProcess) -> int:
    """Each payload through every channel and into refusals; returns how many `log` lines to expect."""
    hello, hook = router.url("endpoints.hello"), router.url("webhooks.hook")
    with httpx.Client(timeout=20) as client:
        for payload in PAYLOADS:
            assert client.get(hello, params={"name": payload}).status_code == 200
            assert client.post(hook, json={"name": payload}).status_code in (200, 202)
            # Refused: a wrong key, an unknown URL, bad JSON: the caller's text reaches the log as
            # the path or the reason's context, never as a field.
            assert client.post(hook.split("?")[0], params={"apiKey": payload}, json={}).status_code == 401
            assert client.get(f"{router.base}/listener/{quote(payload, safe='')}/x").status_code == 404
            assert client.get(f"{router.base}/nope/{quote(payload, safe='')}").status_code == 404
            assert (
                client.post(
                    hello, content=payload.encode(), headers={"content-type": "application/json"}
                ).status_code
                == 400
            )
        assert client.get(hello + "?name=%FF%FEFORGED%20level=error").status_code == 200
        ctype = 'text/x; level=error signal_id=FORGED "q" \\'  # header values cannot hold CR/LF
        assert client.post(hook, content=b"{}", headers={"content-type": ctype}).status_code in (400, 415)
    with smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=20) as smtp:
        for payload in PAYLOADS[:5]:
            body = (
                f"From: a@example.com\r\nTo: inbox@example.com\r\nSubject: {payload.splitlines()[0]}\r\n\r\n"
                f"{payload}\r\n"
            ).encode("utf-8", "surrogateescape")
            smtp.sendmail("a@example.com", ["inbox@example.com"], body)
        smtp.sendmail(
            "a@example.com",
            ["inbox@example.com"],
            b"From: a@example.com\r\nTo: inbox@example.com\r\nSubject: \xff\xfe FORGED level=error\r\n\r\n"
            b"\xff FORGED\r\n",
        )
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("a@example.com", ["FORGED-level=error@example.com"], b"Subject: x\r\n\r\nx\r\n")
    validator = RequestValidator(TOKEN)
    for i, payload in enumerate(PAYLOADS):
        params = {
            "MessageSid": f"SM{i:032d}",
            "AccountSid": "AC" + "0" * 32,
            "From": "+15551230001",
            "To": "+15559870002",
            "Body": payload,
            "NumMedia": "0",
        }
        url = f"{router.base}/sms/main"
        sig = validator.compute_signature(url, params)
        assert (
            httpx.post(url, data=params, headers={"X-Twilio-Signature": sig}, timeout=20).status_code == 200
        )
        assert (
            httpx.post(url, data=params, headers={"X-Twilio-Signature": "bad"}, timeout=20).status_code == 403
        )
    return len(PAYLOADS) * 3 + 1 + 6


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_caller_text_through_every_channel_stays_in_one_value(tmp_path: Path, fmt: str) -> None:
    if fmt == "logfmt":
        need(
            shutil.which("node") is not None and NODE_LOGFMT.exists(),
            "node and npm's logfmt (.ci/run installs them into .ci/node) are needed to parse logfmt",
        )
    router = RouterProcess(tmp_path, CONFIG, router_extra=f'log_format = "{fmt}"')
    router.start()
    try:
        expected = _send_everything(router)
        router.wait_for(lambda: router.log().count("workflow log") >= expected, timeout=60)
    finally:
        router.stop()
    records = parse(fmt, router.log())
    logged = [r for r in records if r["msg"] == "workflow log"]
    assert len(logged) >= expected
    refused = [r for r in records if r["msg"] == "refused"]
    assert {r["status"] for r in refused} >= {"401", "404", "400", "403", "550"} or {
        r["status"] for r in refused
    } >= {401, 404, 400, 403, 550}, refused
    assert_unforged(records, expect_marks=expected)
    # The caller's text in refusals: an unknown path, a content type, a recipient — one value each.
    assert any(str(r.get("path")) == f"/nope/{PAYLOADS[0]}" for r in refused), refused
    assert any(
        r.get("rcpt") == "FORGED-level=error@example.com" and r["reason"] == "unknown" for r in refused
    )
    assert any("content type" in str(r["reason"]) for r in refused)
    assert not any(r.get("path") in ("/readyz", "/healthz") for r in refused)  # probes are not refusals
    assert "Traceback" not in router.log()
    # An endpoint's URL hashes are its credential: a refused request's path shows 4 characters.
    assert not any(
        len(str(r.get("path", ""))) > 30 and str(r.get("path", "")).startswith("/listener/") for r in refused
    )


def test_a_client_that_leaves_mid_body_is_a_refusal_not_a_crash(tmp_path: Path) -> None:
    import socket

    router = RouterProcess(tmp_path, CONFIG)
    router.start()
    try:
        path = router.url("endpoints.hello").split(str(router.http_port), 1)[1]
        with socket.create_connection(("127.0.0.1", router.http_port), timeout=10) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f'Content-Length: 1000\r\n\r\n{{"a":'.encode()
            )
        router.wait_for(lambda: "status=499" in router.log(), timeout=20)
        assert httpx.get(f"{router.base}/healthz", timeout=10).status_code == 200
    finally:
        router.stop()
    assert "Traceback" not in router.log() and "request failed" not in router.log()

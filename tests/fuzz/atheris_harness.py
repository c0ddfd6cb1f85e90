"""Coverage-guided fuzzing with atheris (libFuzzer), run by hand, not by CI (CI runs hypothesis):

    pip install atheris
    python -m tests.fuzz.atheris_harness TARGET [libFuzzer flags, e.g. -max_total_time=300 -rss_limit_mb=1024]

TARGET is one of: http, multipart, webhook, mime, jwt, twilio, config. Same invariants as the
hypothesis targets: the parser's own refusal (BadBody, JwtFailure, ConfigError, False) is fine,
any other exception is a crash that libFuzzer saves as crash-<sha1> for replay
(`python -m tests.fuzz.atheris_harness TARGET crash-<sha1>`).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

# Our packages plus the parsers they lean on (PyJWT, the email package, tomllib, urllib.parse),
# so that libFuzzer's coverage feedback reaches into them.
with atheris.instrument_imports(
    include=["channels", "config", "engine", "jwt", "email", "tomllib", "urllib", "twilio.request_validator"]
):
    from channels.http.asgi import Request
    from channels.http.jwt_auth import JwtFailure, verify
    from channels.http.parsing import BadBody, build_data, parse_json
    from channels.http.twilio import _form, signature_valid
    from channels.smtp.ipc import pack
    from channels.smtp.mime import parse_email
    from config import ConfigError, RouterSettings, load_config
    from engine.entity import Entity

CONTENT_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=b",
    "text/plain",
    "",
    "application/x+json; charset=utf-16",
]
FILES = Path(tempfile.mkdtemp(prefix="atheris-files-"))
CONFIG = Path(tempfile.mkdtemp(prefix="atheris-config-")) / "router.toml"


async def _no_receive() -> dict[str, object]:
    raise AssertionError("body already read")


def _request(body: bytes, ctype: str, query: str = "", headers: dict[str, str] | None = None) -> Request:
    return Request(
        scope={},
        receive=_no_receive,
        method="POST",
        path="/sms/main",
        query_string=query,
        headers={"content-type": ctype, **(headers or {})},
        client="127.0.0.1",
        request_id="atheris",
        body=body,
        body_read=True,
    )


def _latin1(fdp: atheris.FuzzedDataProvider, size: int) -> str:
    """Header text as hypercorn hands it over: any bytes, decoded as latin-1."""
    return fdp.ConsumeBytes(size).decode("latin-1")


def _journal(data: dict[str, object]) -> None:
    entity = Entity("endpoints", "endpoints.fuzz", data)
    assert json.loads(entity.to_json())["__signal_id"] == entity.id


def fuzz_http(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    ctype = fdp.PickValueInList(CONTENT_TYPES) if fdp.ConsumeBool() else _latin1(fdp, 40)
    query = _latin1(fdp, 40)
    try:
        _journal(build_data(_request(fdp.ConsumeBytes(fdp.remaining_bytes()), ctype, query), None))
    except BadBody:
        pass


def fuzz_multipart(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    ctype = "multipart/form-data; boundary=" + _latin1(fdp, fdp.ConsumeIntInRange(0, 12))
    try:
        _journal(build_data(_request(fdp.ConsumeBytes(fdp.remaining_bytes()), ctype), FILES))
    except BadBody:
        pass


def fuzz_webhook(data: bytes) -> None:
    try:
        parse_json(data)
    except BadBody:
        pass


def fuzz_mime(data: bytes) -> None:
    email = parse_email(data, files_dir=None, received_at="2026-01-01T00:00:00Z")
    pack({"data": email})


def fuzz_jwt(data: bytes) -> None:
    outcome = verify(data.decode("utf-8", "replace"), issuer="billing", secret="s" * 40)
    assert isinstance(outcome, JwtFailure) and outcome.status in (401, 403)


def fuzz_twilio(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    headers = {
        "x-twilio-signature": _latin1(fdp, 30),
        "x-twilio-webhooks-signature-settings": _latin1(fdp, 30),
        "x-forwarded-proto": _latin1(fdp, 8),
        "x-forwarded-host": _latin1(fdp, 30),
    }
    request = _request(
        fdp.ConsumeBytes(fdp.remaining_bytes()), "application/x-www-form-urlencoded", "", headers
    )
    assert signature_valid(request, _form(request), RouterSettings(trust_proxy=True), "t" * 32) is False


def fuzz_config(data: bytes) -> None:
    CONFIG.write_bytes(data)
    try:
        load_config(CONFIG, environ={"TOKEN": "x"})
    except ConfigError as exc:
        assert exc.issues


TARGETS: dict[str, Callable[[bytes], None]] = {
    "http": fuzz_http,
    "multipart": fuzz_multipart,
    "webhook": fuzz_webhook,
    "mime": fuzz_mime,
    "jwt": fuzz_jwt,
    "twilio": fuzz_twilio,
    "config": fuzz_config,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.atheris_harness {{{','.join(TARGETS)}}} [libFuzzer flags]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

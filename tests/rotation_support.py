"""Shared by the rotation tests: a config with generated and pinned credentials, and helpers."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import jwt

PINNED_SECRET = "pinned-secret-" + "p" * 32
PINNED_KEY = "pinned-webhook-key-" + "w" * 24

CONFIG = """
[endpoints.signed]
return_data = "signed ok"
add_authentication = true

[endpoints.partner]
return_data = "partner ok"
add_authentication = true
endpoint_key = "partner"

[endpoints.fixed]
return_data = "fixed ok"
add_authentication = true
endpoint_key = "fixed"
endpoint_secret = "${PINNED_SECRET}"

[endpoints.plain]
return_data = "plain ok"

[webhooks.hooks]

[webhooks.pinned_hook]
api_key = "${PINNED_KEY}"
"""
ENV = {"PINNED_SECRET": PINNED_SECRET, "PINNED_KEY": PINNED_KEY}


def token(key: str, secret: str, algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyJWT's InsecureKeyLengthWarning: a key shorter than the hash
        return jwt.encode({"iss": key, "iat": now, "exp": now + 300, **claims}, secret, algorithm=algorithm)


def call(url: str, tok: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return httpx.post(url, json={}, headers=headers, timeout=10).status_code


def within(seconds: float, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not seen within {seconds}s"
        time.sleep(0.05)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def pair(item: dict[str, Any]) -> tuple[str, str]:
    return item["endpoint_key"], item["endpoint_secret"]

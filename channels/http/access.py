"""Who may call a source: its IP allow-list, HTTP Basic credentials, a header token.

Checked before the body is read, allow-list first (403), then credentials (401). Every
comparison of a secret is constant-time and always made, so a wrong user name and a wrong
password take the same time. A hashed Basic password (`user:pbkdf2_sha256$…`, 600,000 rounds
by default, ~0.3 s) is verified once per distinct credential in a worker thread, one at a time,
and remembered on success: a caller with the right password pays it once, a flood of wrong
ones gets one CPU at most and never stalls the event loop.

The client's address is the socket peer, unless `[router] trust_proxy` is on and the peer is
one of `trusted_proxies`: then it is the right-most `X-Forwarded-For` entry that is not itself
a trusted proxy (nginx's `real_ip_recursive on`). A forged `X-Forwarded-For` from anyone else
is ignored.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
from collections import OrderedDict
from typing import Any

import trio

from channels.http.asgi import Request, error_response
from channels.http.pipeline import Refused
from channels.http.routes import HttpSource
from config.passwords import verify_password

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_verify_threads = trio.CapacityLimiter(1)
_verified: OrderedDict[bytes, None] = OrderedDict()  # digests of credentials that matched a hash
_VERIFIED_MAX = 1024


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(text: str, nets: list[Network]) -> bool:
    address = _address(text)
    return address is not None and any(address in net for net in nets)


def client_address(peer: str, forwarded_for: str, trusted: list[Network]) -> str:
    """The caller's address as described in the module docstring."""
    if not forwarded_for or not in_networks(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if _address(hop) is None:
            return peer  # a malformed entry: believe nothing beyond the proxy
        if not in_networks(hop, trusted):
            return hop
    return hops[0] if hops else peer


@functools.lru_cache(maxsize=256)
def networks(items: tuple[str, ...]) -> list[Network]:
    return [ipaddress.ip_network(item, strict=False) for item in items]


async def check_access(request: Request, source: HttpSource) -> None:
    cfg: Any = source.config
    allow = getattr(cfg, "allow_ips", None)
    if allow:
        if not in_networks(request.client, networks(tuple(allow))):
            raise Refused(error_response(403, "this address may not call this source"))
    header = getattr(cfg, "auth_header", None)
    if header:
        given = request.headers.get(header.lower(), "")
        ok = hmac.compare_digest(given.encode("latin-1"), str(cfg.auth_token).encode())
        if not ok:
            raise Refused(error_response(401, f"missing or invalid {header} header"))
    basic = getattr(cfg, "basic_auth", None)
    if basic:
        if not await _basic_ok(request.headers.get("authorization", ""), basic):
            raise Refused(
                error_response(401, "missing or invalid HTTP Basic credentials").header(
                    "www-authenticate", 'Basic realm="router", charset="UTF-8"'
                )
            )


def _given_basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


async def _basic_ok(header: str, expected: str) -> bool:
    want_user, _, want_secret = expected.partition(":")
    given = _given_basic(header) or ("", "")
    user_ok = hmac.compare_digest(given[0].encode(), want_user.encode())
    if not want_secret.startswith("pbkdf2_sha256$"):
        password_ok = hmac.compare_digest(given[1].encode(), want_secret.encode())
        return user_ok and password_ok and bool(given[0])
    if not user_ok:
        return False
    digest = hashlib.sha256(f"{expected}\x00{given[1]}".encode()).digest()
    if digest in _verified:
        _verified.move_to_end(digest)
        return True
    ok = await trio.to_thread.run_sync(verify_password, given[1], want_secret, limiter=_verify_threads)
    if ok:
        _verified[digest] = None
        if len(_verified) > _VERIFIED_MAX:
            _verified.popitem(last=False)
    return bool(ok)

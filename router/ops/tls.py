"""HTTPS on the public listener: one server `SSLContext` per process, reloaded in place.

hypercorn builds its context once, when it starts serving; to pick up a renewed certificate on
SIGHUP without dropping the listener, we hand it our own context (`TlsConfig.create_ssl_context`,
hypercorn's public hook for exactly this) and call `load_cert_chain` on that same object later:
OpenSSL uses the new chain for every handshake after the call, and connections already open
keep theirs. ALPN offers h2 then http/1.1, so `curl --http2` gets HTTP/2 over TLS.

Mutual TLS: with `tls_client_ca`, a client without a certificate signed by that CA fails the
handshake (no HTTP answer at all, as nginx's `ssl_verify_client on` does). A reload adds the CAs
of the new file; a CA removed from it is still trusted until a restart (OpenSSL cannot forget one).
"""

from __future__ import annotations

import ssl
from typing import Any

from hypercorn.config import Config as HypercornConfig

from config import HttpSettings


def server_context(http: HttpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 7540 §9.2 for h2
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(["h2", "http/1.1"])
    load(context, http)
    return context


def load(context: ssl.SSLContext, http: HttpSettings) -> None:
    """(Re)load certificate, key and client CA into `context`; raises ssl.SSLError / OSError."""
    context.load_cert_chain(str(http.tls_cert), str(http.tls_key))
    if http.tls_client_ca is not None:
        context.load_verify_locations(str(http.tls_client_ca))
        context.verify_mode = ssl.CERT_REQUIRED


class TlsConfig(HypercornConfig):
    """hypercorn's config, serving our context instead of building its own."""

    def __init__(self, context: ssl.SSLContext, **_: Any) -> None:
        super().__init__()
        self.context = context

    def create_ssl_context(self) -> ssl.SSLContext:
        return self.context

    @property
    def ssl_enabled(self) -> bool:
        return True

"""Request bodies sent with `Content-Encoding: gzip` or `deflate`, decoded as they arrive.

`max_body` bounds the decoded size, and it is applied while decoding: each chunk is inflated
with `max_length` set to what is left of the limit plus one byte, so a zip bomb (10 MB of zeros
is 10 kB of gzip) is refused with a 413 once the output passes the limit, having produced at most
that much. Memory stays at the limit plus zlib's 32 kB window, whatever the ratio.

`deflate` is the zlib format by RFC 9110, but some senders use raw deflate (RFC 1951), so the
first two bytes decide. Several gzip members one after the other (RFC 1952 §2.2) are one body.
"""

from __future__ import annotations

import zlib

from channels.http.asgi import BodyTooLarge

SUPPORTED = ("gzip", "deflate")
_GZIP, _ZLIB, _RAW = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS


class UnsupportedEncoding(Exception):
    """A content coding we do not decode (415)."""


class BadEncoding(Exception):
    """A body that is not what its Content-Encoding says (400)."""


def decoder_for(header: str | None, limit: int) -> Decoder | None:
    """The decoder for a Content-Encoding header; None when the body is sent as it is."""
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) > 1:
        raise UnsupportedEncoding(f"Content-Encoding {header!r}: one coding at most ({', '.join(SUPPORTED)})")
    coding = "gzip" if codings[0] == "x-gzip" else codings[0]
    if coding not in SUPPORTED:
        raise UnsupportedEncoding(
            f"Content-Encoding {codings[0]!r} is not supported; use {' or '.join(SUPPORTED)}"
        )
    return Decoder(coding, limit)


def _is_zlib(head: bytes) -> bool:
    return head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


class Decoder:
    def __init__(self, coding: str, limit: int) -> None:
        self.coding = coding
        self.limit = limit
        self.size = 0  # decoded bytes so far
        self.fed = 0
        self._head = b""  # deflate: bytes held until the first two tell zlib from raw
        self._z = zlib.decompressobj(_GZIP) if coding == "gzip" else None

    def feed(self, data: bytes) -> bytes:
        """Decode one chunk; raises BodyTooLarge as soon as the output passes the limit."""
        self.fed += len(data)
        parts: list[bytes] = []
        pending = data
        while pending:
            if self._z is None:
                self._head += pending
                if len(self._head) < 2:
                    break
                pending, self._head = self._head, b""
                self._z = zlib.decompressobj(_ZLIB if _is_zlib(pending) else _RAW)
            elif self._z.eof:
                if self.coding != "gzip":
                    raise BadEncoding("data after the end of the deflate stream")
                self._z = zlib.decompressobj(_GZIP)  # the next gzip member
            try:
                out = self._z.decompress(pending, self.limit - self.size + 1)
            except zlib.error as exc:
                raise BadEncoding(f"body is not valid {self.coding} ({exc})") from None
            self.size += len(out)
            if self.size > self.limit:
                raise BodyTooLarge(self.limit, decoded=True)
            parts.append(out)
            pending = self._z.unused_data if self._z.eof else self._z.unconsumed_tail
        return b"".join(parts)

    def finish(self) -> None:
        """At the end of the body: a stream cut short is refused (an empty body is empty)."""
        if self.fed == 0:
            return
        if self._z is None or not self._z.eof:
            raise BadEncoding(f"{self.coding} body is truncated")

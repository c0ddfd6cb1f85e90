"""Parsing of the human-friendly values used in ``router.toml``.

Every parser accepts what a TOML file can hold (a string or a number), returns a normalised
Python value and raises :class:`ValueError` with a message saying what is allowed.
"""

from __future__ import annotations

import ipaddress
import math
import re

__all__ = [
    "is_loopback_host",
    "parse_duration",
    "parse_listen",
    "parse_rate",
    "parse_size",
]

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_HELP = (
    "use a number of bytes or a number with a unit: B, KB, MB, GB, TB (powers of 1000) "
    'or KiB, MiB, GiB, TiB (powers of 1024), e.g. "512KiB" or "10MB"'
)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]*)\s*$")

_DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION_HELP = (
    "use a number of seconds or a number with a unit: ms, s, m, h, d, w "
    '(e.g. "250ms", "30s", "5m", "1h30m", "2d")'
)
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_NUMBER_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*$")

_RATE_PERIODS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE_HELP = 'use COUNT/PERIOD with PERIOD one of s, m, h, d (e.g. "10/s", "600/m", "5/h")'
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([A-Za-z]+)\s*$")

_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def _reject_bool(value: object, what: str, help_text: str) -> None:
    if isinstance(value, bool):
        raise ValueError(f"expected a {what}, got a boolean; {help_text}")


def parse_size(value: object) -> int:
    """``"1MiB"`` / ``"10MB"`` / ``"512KiB"`` / ``1024`` -> a number of bytes (int >= 0)."""
    _reject_bool(value, "size", _SIZE_HELP)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}; {_SIZE_HELP}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0 or not value.is_integer():
            raise ValueError(f"size must be a whole, non-negative number of bytes, got {value}; {_SIZE_HELP}")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size, got {type(value).__name__}; {_SIZE_HELP}")
    match = _SIZE_RE.match(value)
    if match is None:
        raise ValueError(f"invalid size {value!r}; {_SIZE_HELP}")
    number, unit = match.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r} in {value!r}; {_SIZE_HELP}")
    size = float(number) * factor
    if not math.isfinite(size):  # int(inf) would raise OverflowError, which pydantic does not report
        raise ValueError(f"size {value!r} is too large; {_SIZE_HELP}")
    return int(size)


def parse_duration(value: object) -> float:
    """``"30s"`` / ``"5m"`` / ``"1h"`` / ``"250ms"`` / ``"2d"`` / ``"1h30m"`` / ``30`` -> seconds."""
    _reject_bool(value, "duration", _DURATION_HELP)
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(
                f"duration must be a non-negative number of seconds, got {value}; {_DURATION_HELP}"
            )
        return seconds
    if not isinstance(value, str):
        raise ValueError(f"expected a duration, got {type(value).__name__}; {_DURATION_HELP}")
    text = value.strip()
    if _NUMBER_RE.match(text):
        return _finite_duration(float(text), value)
    compact = re.sub(r"\s+", "", text)
    if compact.startswith("-"):
        raise ValueError(f"duration must not be negative, got {value!r}; {_DURATION_HELP}")
    parts = _DURATION_PART_RE.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"invalid duration {value!r}; {_DURATION_HELP}")
    return _finite_duration(
        sum(float(number) * _DURATION_UNITS[unit.lower()] for number, unit in parts), value
    )


def _finite_duration(seconds: float, value: str) -> float:
    if not math.isfinite(seconds):  # hundreds of digits overflow to infinity: no timer takes that
        raise ValueError(f"duration {value!r} is too large; {_DURATION_HELP}")
    return seconds


def parse_rate(value: object) -> float:
    """``"10/s"`` / ``"600/m"`` / ``"5/h"`` -> events per second (float > 0)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a rate string, got {type(value).__name__}; {_RATE_HELP}")
    match = _RATE_RE.match(value)
    if match is None:
        raise ValueError(f"invalid rate {value!r}; {_RATE_HELP}")
    count, period = match.groups()
    seconds = _RATE_PERIODS.get(period.lower())
    if seconds is None:
        raise ValueError(f"unknown rate period {period!r} in {value!r}; {_RATE_HELP}")
    rate = float(count) / seconds
    if not math.isfinite(rate):
        raise ValueError(f"rate {value!r} is too large; {_RATE_HELP}")
    if rate <= 0:
        raise ValueError(f"rate must be greater than zero, got {value!r}; {_RATE_HELP}")
    return rate


def parse_listen(value: object) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` / ``"[::1]:8080"`` / ``"localhost:25"`` -> ``(host, port)``.

    IPv6 hosts are returned without brackets. Port 0 (let the OS choose) is allowed.
    """
    help_text = 'use HOST:PORT, e.g. "127.0.0.1:8080", "0.0.0.0:25" or "[::1]:8080"'
    if not isinstance(value, str):
        raise ValueError(f"expected a HOST:PORT string, got {type(value).__name__}; {help_text}")
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"invalid listen address {value!r}; {help_text}")
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid IPv6 address {host!r} in {value!r}; {help_text}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"invalid listen address {value!r}: host and port are required; {help_text}")
        if ":" in host:
            raise ValueError(f"IPv6 addresses must be in brackets in {value!r}; {help_text}")
        if not _is_ipv4(host) and not _HOSTNAME_RE.match(host):
            raise ValueError(f"invalid host {host!r} in {value!r}; {help_text}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid port {port_text!r} in {value!r}: use 0-65535; {help_text}")
    return host, int(port_text)


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
